// cuda_on_cpu.h: just enough of CUDA's execution model, in plain C++, to run the
// kernels of scratchvae/kernels/*.cu on a CPU, unchanged. Tests use it to check every
// kernel against its NumPy reference on machines without a GPU (see ../README.md).
//
// The model in four words:
//
//   grid      a launch runs gridDim.x blocks; blocks are independent of each other
//             (a GPU runs them in any order, many at once), so a kernel may never
//             wait for another block. Here: one block after the other.
//   block     blockDim.x threads that run together and may cooperate: they share the
//             block's __shared__ memory and meet at __syncthreads(). Here: one
//             std::thread per CUDA thread, all running at once.
//   index     each thread reads which one it is from blockIdx.x (its block) and
//             threadIdx.x (its place in the block): blockIdx.x * blockDim.x + threadIdx.x
//             numbers the threads of the whole grid. Here: thread_local variables.
//   barrier   __syncthreads() returns only once every thread of the block has called
//             it, so what one thread wrote to shared memory before it is visible to
//             all after it. Here: a std::barrier with one seat per thread of the block.
//
// A __shared__ variable is one per block. Blocks run one at a time here, so `static`
// (one variable for the whole program, seen by every std::thread) is exactly that;
// a mutex lets one launch run at a time. The device math functions (exp, tanh, log1p
// on float or double) are the overloads of <cmath>.
//
// Compile the .cu file as C++ with this header first (the harness writes a small
// file that includes both), for example:
//     g++ -std=c++20 -O2 -ffp-contract=off -pthread -shared -fPIC unit.cpp
// -ffp-contract=off keeps a * b + c as two roundings, as NumPy computes it; nvcc
// fuses it into one (-fmad=true), see ../README.md for where that shows.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// ---------------------------------------------------------------------------------
// The CUDA keywords. Device and kernel functions are ordinary C++ functions here.
// ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static   // one per block: blocks run one at a time (see above)

// ---------------------------------------------------------------------------------
// Which thread am I: set by the launch below for each std::thread.
// ---------------------------------------------------------------------------------
struct uint3 {
    unsigned int x = 0, y = 0, z = 0;
};
using dim3 = uint3;

inline thread_local uint3 threadIdx;   // my place in my block
inline thread_local uint3 blockIdx;    // my block's place in the grid
inline thread_local dim3 blockDim;     // threads per block
inline thread_local dim3 gridDim;      // blocks in the grid

// ---------------------------------------------------------------------------------
// Device math: float and double overloads, as CUDA provides them.
// ---------------------------------------------------------------------------------
using std::exp;
using std::expm1;
using std::fabs;
using std::log;
using std::log1p;
using std::sqrt;
using std::tanh;
inline float __expf(float x) { return std::exp(x); }   // on a GPU: a faster, less exact exp
inline float __logf(float x) { return std::log(x); }

namespace cuda_on_cpu {

// What the threads of the running block share.
struct Block {
    std::optional<std::barrier<>> sync;     // __syncthreads(): one seat per thread
    std::vector<long> syncs;                // how often each thread called it (in this block)
    std::string error;                      // the first misuse found, if any
};

inline thread_local Block* current_block = nullptr;
inline std::mutex one_launch_at_a_time;     // __shared__ memory is one per program
inline std::string last_error;

}  // namespace cuda_on_cpu

// Wait here until every thread of the block has arrived.
inline void __syncthreads() {
    cuda_on_cpu::Block& block = *cuda_on_cpu::current_block;
    ++block.syncs[threadIdx.x];
    block.sync->arrive_and_wait();
}

namespace cuda_on_cpu {

// Run `kernel` (a call of one kernel with its arguments bound) on a grid of `grid`
// blocks of `threads` threads: kernel<<<grid, threads>>>(...). Returns 0, or 1 with
// a message in last_error for a launch a GPU would refuse or a misused barrier.
inline int launch(unsigned int grid, unsigned int threads, const std::function<void()>& kernel) {
    std::lock_guard<std::mutex> lock(one_launch_at_a_time);
    last_error.clear();
    if (threads == 0 || threads > 1024 || grid == 0 || grid > 2147483647u) {
        last_error = "invalid launch: " + std::to_string(grid) + " blocks of " +
                     std::to_string(threads) + " threads (a GPU takes 1 to 2^31 - 1 blocks of 1 to 1024)";
        return 1;
    }
    Block block;
    block.syncs.assign(threads, 0);
    block.sync.emplace(threads);

    // When the last thread has finished a block: check that all threads met at the same
    // barriers, then give the next block a fresh barrier and fresh counts.
    auto block_done = [&]() noexcept {
        for (unsigned int t = 1; t < threads && block.error.empty(); ++t) {
            if (block.syncs[t] != block.syncs[0]) {
                block.error = "block " + std::to_string(blockIdx.x) + ": thread " + std::to_string(t) +
                              " called __syncthreads() " + std::to_string(block.syncs[t]) +
                              " times, thread 0 " + std::to_string(block.syncs[0]) +
                              " times (every thread of a block must reach every barrier)";
            }
        }
        block.syncs.assign(threads, 0);
        block.sync.emplace(threads);
    };
    std::barrier between_blocks(threads, block_done);

    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            blockDim = {threads, 1, 1};
            gridDim = {grid, 1, 1};
            current_block = &block;
            for (unsigned int b = 0; b < grid; ++b) {
                blockIdx = {b, 0, 0};
                kernel();
                // This thread has returned: the others' __syncthreads() no longer wait
                // for it (the counts above still catch a barrier it skipped).
                block.sync->arrive_and_drop();
                between_blocks.arrive_and_wait();
            }
        });
    }
    for (std::thread& thread : pool) thread.join();
    if (!block.error.empty()) {
        last_error = block.error;
        return 1;
    }
    return 0;
}

}  // namespace cuda_on_cpu
