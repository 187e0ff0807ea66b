//! controller (under construction)
