//! PasswordPolicy controller (next).
