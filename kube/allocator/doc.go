// Package allocator hands out addresses of the pools of vipspeaker.toml to
// Services. It is pure bookkeeping over plain inputs — the pools
// (config.Pool) and one Request per Service — and knows nothing of
// Kubernetes, so the kube package can feed it from Services and a new leader
// can rebuild it from what the Services already carry (Request.Current).
//
// Rules:
//
//   - Families: a Request lists the families it wants (from spec.ipFamilies)
//     in order. The first is required; the others are required only with
//     RequireAll (ipFamilyPolicy RequireDualStack) and best effort otherwise
//     (PreferDualStack): a pool that has every family is preferred, else the
//     first pool that has the first one.
//   - Requested addresses (Request.Addresses) are taken as they are, from
//     any pool holding them (auto-assign or not) or from the named pool; each
//     must be of a wanted family, one per family.
//   - A named pool (Request.Pool) must exist and allow the namespace.
//     Without one, pools with auto-assign that allow the namespace are tried
//     in the order of the file.
//   - Addresses a Service already holds (Request.Current) are kept when they
//     still fit the request, so nothing moves when a leader changes or the
//     configuration is reloaded.
//   - Sharing: Services with the same non-empty sharing key may hold the same
//     address when no two of them use the same protocol and port. When
//     auto-assigning, an address already shared under the key is preferred.
//   - A pool's addresses are those config.Pool yields (avoid-buggy-ips
//     skips IPv4 addresses ending in .0 and .255). Auto-assignment also
//     skips the network and broadcast address (first and last) of every
//     IPv4 CIDR of /30 or wider; a Service may still request one by
//     address, a Service already holding one keeps it, and a pool that
//     wants them lists the addresses as a range.
//
// The allocator is not safe for concurrent use; the kube package calls it
// from one worker.
package allocator
