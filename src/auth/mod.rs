//! Who is calling and what they may do: tokens, ACL policies and their storage.

pub mod policy;
pub mod policy_store;
pub mod token;
pub mod wrapping;
