/* LoRA dropout on CPU: out = x * scale, with zeros where an element is dropped, in one pass.

   Element i is dropped when a hash of (key, i) falls below p * 2^32: a counter-based
   draw, so the same key drops the same elements again (backward, and recomputing the
   dropped input there) without storing a mask or positions, and every thread draws its
   own elements independently. The hash is two rounds of MurmurHash3's 32-bit finalizer
   (full avalanche: each input bit flips each output bit with probability 1/2), vectorized
   by gcc. The elements are split across OpenMP threads (PyTorch's pool, see
   adapters/mtlora/task_mlp.c). */
#include <stdint.h>

static inline uint32_t finalize(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* whether element `index` is kept */
static inline int kept(uint64_t key, uint64_t index, uint32_t threshold) {
    const uint32_t h = finalize((uint32_t)index ^ (uint32_t)key);
    return finalize(h ^ (uint32_t)(key >> 32) ^ (uint32_t)(index >> 32)) >= threshold;
}

/* out may be x (in place) */
void lora_dropout(const float *x, float *out, int64_t count, uint64_t key, uint32_t threshold,
                  float scale, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < count; i++)
        out[i] = kept(key, (uint64_t)i, threshold) ? x[i] * scale : 0.0f;
}
