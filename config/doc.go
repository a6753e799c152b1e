// Package config owns vipspeaker.toml: the part of vipspeaker's
// configuration that is not GoBGP's own (gobgp.conf belongs to package bgp).
//
// Parse and LoadDir turn the file into a typed, validated Config: pools carry
// parsed netip prefixes and ranges, durations are time.Duration, defaults are
// filled in. Every problem is reported as an *Error that names the file, the
// line of the offending key or array element, the field and the reason, and
// all problems of a file are reported at once, not only the first. The same
// validation serves the running agent (a config with any error is rejected
// as a whole, the last good one stays) and `vipspeaker check`.
//
// Decisions where the interface document is silent:
//
//   - Unknown keys are errors (strict decoding), so a misspelt key is never
//     silently ignored.
//   - A pool address may be a CIDR ("203.0.113.0/28"), a range
//     ("198.51.100.10-198.51.100.20", spaces around the dash allowed) or a
//     single address (as OpenELB allows). A CIDR with host bits set
//     ("203.0.113.5/28") is an error that names the network meant, because
//     it is nearly always a typo. Both ends of a range are in the pool.
//   - Every address of a CIDR is in the pool (Contains, Size, All): a pool is
//     a set of /32 and /128 host addresses, not a subnet. The allocator
//     (kube/allocator) does not hand out the network and broadcast address
//     of an IPv4 CIDR of /30 or wider unless a Service asks for it; a range
//     is handed out as written. Sites whose clients' routers mishandle
//     IPv4 addresses ending in .0 or .255 set the pool key
//     `avoid-buggy-ips = true` (MetalLB's name and meaning, so migrating users
//     find it); those addresses are then neither contained, counted nor
//     iterated.
//   - Pool entries may not overlap, neither across pools nor inside one pool,
//     and may not touch unspecified, loopback, multicast, link-local,
//     limited-broadcast or IPv4-mapped IPv6 space.
//   - A pool's mode defaults to bgp. A layer2 pool needs [pools.layer2]
//     interfaces; a bgp pool's [pools.layer2] section is accepted and unused.
//   - Pool names follow Kubernetes object names (DNS-1123 subdomain), since
//     they appear in annotations and metric labels. Namespaces are DNS-1123
//     labels.
//   - gratuitous-count is 0..100 (0 sends none); gratuitous-interval is a Go
//     duration between 1ms and 1m.
//   - membership.join entries are "host" or "host:port"; secret-file must be
//     an absolute path, or secret:NAME/KEY (a key of a Secret in the agent's
//     namespace, resolved through the API server in cluster mode only; see
//     ParseSecretRef). Neither is looked up here (check must not touch the
//     system).
//   - A [[peer-nodes]] entry needs at least one neighbor address and a
//     non-empty label selector; a neighbor may appear in one entry only (a
//     selector such as "zone in (rack1,rack2)" expresses a union).
//
// From the kernel it needs nothing: it only reads files.
package config
