//! The provider API of the Secrets Store CSI driver (`v1alpha1.CSIDriverProvider`).
//!
//! The Rust code is generated from `proto/v1alpha1/service.proto` and checked in, so a normal
//! build needs neither `protoc` nor the code generator (the linkerd2-proxy pattern). The test
//! below regenerates it with `protox` and `tonic-prost-build` (dev-dependencies) and fails on
//! drift; `DBWARDEN_REGENERATE=1 cargo test --lib csi::proto` rewrites the checked-in file.

/// Messages, the server trait and the client of package `v1alpha1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1alpha1 {
    include!("gen/v1alpha1.rs");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn checked_in_code_matches_the_proto() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let fds = protox::Compiler::new([root.join("proto")])
            .unwrap()
            .include_source_info(true)
            .open_file("v1alpha1/service.proto")
            .unwrap()
            .file_descriptor_set();
        let out = tempfile::tempdir().unwrap();
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .out_dir(out.path())
            .compile_fds(fds)
            .unwrap();
        let fresh = std::fs::read_to_string(out.path().join("v1alpha1.rs")).unwrap();
        let checked_in_path = root.join("src/csi/gen/v1alpha1.rs");
        if std::env::var_os("DBWARDEN_REGENERATE").is_some() {
            std::fs::write(&checked_in_path, &fresh).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&checked_in_path).unwrap();
        assert!(
            checked_in == fresh,
            "src/csi/gen/v1alpha1.rs is out of date with proto/v1alpha1/service.proto: \
             run `DBWARDEN_REGENERATE=1 cargo test --lib csi::proto` and commit the result"
        );
    }
}
