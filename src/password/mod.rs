//! password (under construction)
