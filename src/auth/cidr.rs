//! CIDR lists that bind tokens and secret IDs to caller networks (`token_bound_cidrs`,
//! `secret_id_bound_cidrs`, `cidr_list`).
//!
//! Lists are stored as the canonical strings the caller wrote (after validation), so reads
//! return what was written; matching parses them again, which costs nanoseconds.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::engine::error::{Result, invalid};

/// Parses one entry: a network (`10.0.0.0/8`) or a single address (`10.0.0.1`, meaning /32
/// or /128), as Vault's `parseutil.ParseAddrs` accepts.
pub fn parse(entry: &str) -> Result<IpNet> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net);
    }
    entry
        .parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| invalid(format!("invalid CIDR block or address {entry:?}")))
}

/// Validates a list and returns it normalised (trimmed, no empty entries).
pub fn normalize(list: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(list.len());
    for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        parse(entry)?;
        out.push(entry.to_owned());
    }
    Ok(out)
}

/// Whether `remote` is inside one of the blocks. An empty list binds nothing and allows
/// every address; a list with blocks refuses a caller whose address is unknown.
pub fn allows(list: &[String], remote: Option<IpAddr>) -> bool {
    if list.is_empty() {
        return true;
    }
    let Some(remote) = remote.map(canonical) else {
        return false;
    };
    list.iter()
        .filter_map(|e| parse(e).ok())
        .any(|net| net.contains(&remote))
}

/// Whether every block of `inner` lies inside some block of `outer` (a secret ID may only
/// narrow its role's networks). An empty `outer` contains everything.
pub fn is_subset(inner: &[String], outer: &[String]) -> bool {
    if outer.is_empty() {
        return true;
    }
    let outer: Vec<IpNet> = outer.iter().filter_map(|e| parse(e).ok()).collect();
    inner.iter().all(|e| {
        parse(e)
            .map(|net| outer.iter().any(|o| o.contains(&net)))
            .unwrap_or(false)
    })
}

/// An IPv4 caller seen through an IPv6 socket (`::ffff:10.0.0.1`) is matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_networks_and_single_addresses() {
        let l = list(&["10.0.0.0/8", "127.0.0.1"]);
        assert!(allows(&l, Some("10.1.2.3".parse().unwrap())));
        assert!(allows(&l, Some("127.0.0.1".parse().unwrap())));
        assert!(!allows(&l, Some("127.0.0.2".parse().unwrap())));
        assert!(allows(&l, Some("::ffff:10.9.9.9".parse().unwrap())));
        assert!(!allows(&l, None));
        assert!(allows(&[], None));
    }

    #[test]
    fn rejects_garbage_and_checks_subsets() {
        assert!(normalize(&list(&["10.0.0.0/33"])).is_err());
        assert!(normalize(&list(&["nope"])).is_err());
        assert_eq!(
            normalize(&list(&[" 10.0.0.0/8 ", ""])).unwrap(),
            list(&["10.0.0.0/8"])
        );
        assert!(is_subset(&list(&["10.1.0.0/16"]), &list(&["10.0.0.0/8"])));
        assert!(!is_subset(&list(&["10.0.0.0/7"]), &list(&["10.0.0.0/8"])));
        assert!(is_subset(&list(&["1.2.3.4"]), &[]));
    }
}
