//! Conformance kit (placeholder; being written).
