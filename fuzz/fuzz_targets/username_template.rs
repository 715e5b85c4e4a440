//! Username templates (`dbwarden_plugin::template`): Vault's Go-template subset.
//!
//! Input: fields separated by 0xFF: `template 0xFF display_name 0xFF role_name`.
//!
//! Properties: parsing and rendering never panic, never recurse without bound and never
//! build huge strings (the run's RSS limit and timeout catch those); a template without
//! actions renders as itself; `.DisplayName` and `.RoleName` render the metadata as is.
#![no_main]

use dbwarden_plugin::UsernameMetadata;
use dbwarden_plugin::template::UsernameTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let source = parts.next().unwrap_or_default();
    let meta = UsernameMetadata {
        display_name: parts.next().unwrap_or_default(),
        role_name: parts.next().unwrap_or_default(),
    };
    if let Ok(template) = UsernameTemplate::parse(&source) {
        assert_eq!(template.source(), source);
        let rendered = template.render(&meta);
        if !source.contains("{{") {
            assert_eq!(
                rendered.unwrap(),
                source,
                "plain text must render as itself"
            );
        }
    }
    let fields = UsernameTemplate::parse("{{.DisplayName}}/{{ .RoleName }}").unwrap();
    assert_eq!(
        fields.render(&meta).unwrap(),
        format!("{}/{}", meta.display_name, meta.role_name)
    );
});
