/* Dentries met on path walks, by (parent dentry, name hash): where the name lookup
 * (bpf/name_lookup.h) finds a component without scanning its directory. A busy directory's
 * children list -- /tmp's, full of negative dentries left by deleted temp files, newest first --
 * can hide an old entry behind thousands of others; the walks of the opens that created and use
 * the files have met it already.
 *
 * Entries are hints, never trusted: a hit is checked against the dentry itself (same parent, same
 * name, still hashed and positive). A dentry freed and reused reads as another name and misses. */
#ifndef OTEL_FIM_DENTRY_CACHE_H
#define OTEL_FIM_DENTRY_CACHE_H

#if FIM_NAME_LOOKUP
struct dcache_key {
    u64 parent;   /* struct dentry * */
    u64 hash_len; /* the child's d_name.hash_len: (len << 32) | the kernel's salted name hash */
};

BPF_TABLE("lru_hash", struct dcache_key, u64, dentry_cache, 16384);

static __always_inline void dcache_remember(u64 parent, u64 dentry, u64 hash_len)
{
    struct dcache_key k = {.parent = parent, .hash_len = hash_len};
    u64 *known = dentry_cache.lookup(&k);
    if (!known || *known != dentry)
        dentry_cache.update(&k, &dentry);
}

#define GOLDEN_RATIO_64 0x61C8864680B583EBULL

static __always_inline u64 fim_rol64(u64 w, u32 shift)
{
    return (w << shift) | (w >> (64 - shift));
}

/* The kernel's full_name_hash() for 64-bit word-at-a-time builds (x86-64, arm64): the hash a
 * dentry under `salt` (its parent) is filed by. `words` hold the name, zero-padded. Where a file
 * system hashes names its own way (case folding), the hash differs and the lookup falls back to
 * the scan: a miss, never a wrong hit. */
static __always_inline u32 name_hash(u64 salt, const u64 *words, u32 len)
{
    u64 x = 0, y = salt;
#pragma unroll
    for (u32 w = 0; w < 8; w++) {
        if (w * 8 >= len)
            break;
        x ^= words[w];
        if (len - w * 8 < 8)
            break; /* the last, partial word: folded in, not mixed */
        y ^= x;
        x = fim_rol64(x, 12);
        x += y;
        y = fim_rol64(y, 45);
        y *= 9;
    }
    y ^= x * GOLDEN_RATIO_64;
    y *= GOLDEN_RATIO_64;
    return (u32)(y >> 32);
}
#endif

#endif
