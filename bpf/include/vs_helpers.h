/* Minimal BPF helper declarations for vipspeaker's programs.
 *
 * Written here instead of including libbpf's headers so the generated
 * object depends only on the kernel UAPI headers (linux-libc-dev) and the
 * compiler, which keeps `go generate` reproducible across machines.
 * Helper numbers are the stable UAPI ones from enum bpf_func_id.
 */
#ifndef VS_HELPERS_H
#define VS_HELPERS_H

#include <linux/types.h>

#define SEC(name) __attribute__((section(name), used))
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

/* BTF-style map definitions, read by the cilium/ebpf loader. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]

#define VS_PIN_BY_NAME 1 /* LIBBPF_PIN_BY_NAME */

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size, __wsum seed) = (void *)28;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *xdp_md, int delta) = (void *)54;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *xdp_md, int delta) = (void *)65;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define vs_htons(x) ((__be16)__builtin_bswap16(x))
#define vs_htonl(x) ((__be32)__builtin_bswap32(x))
#else
#define vs_htons(x) ((__be16)(x))
#define vs_htonl(x) ((__be32)(x))
#endif

#endif
