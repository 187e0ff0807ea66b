//! privx (under construction)
