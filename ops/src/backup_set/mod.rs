//! A backup on disk: what its files are called and hold, and how it is checked.
//!
//! A backup is three files in `[backup] dir` (see [`manifest`]): the sealed database dump, the
//! sealed file [`bundle`] and the signed manifest describing both. [`check`] verifies them
//! (quickly or byte for byte), [`fence`] keeps the keys directory out of every backup and
//! restore, and [`counts`] gives the row counts a manifest records and a restore compares.
//! The commands `backup`, `verify`, `restore`, `drill` and `health` use this module; it knows
//! nothing of any command.

pub mod bundle;
pub mod check;
pub mod counts;
pub mod fence;
pub mod manifest;
