// XLA FFI handlers for 2-D convolution (forward, input gradient, weight gradient) through oneDNN, for XLA:CPU.
//
// Layouts are JAX's: activations NHWC, kernel HWIO (grouped: [kh][kw][cin/G][G][cout/G], oneDNN's `hwigo`), dense
// row-major as XLA hands FFI buffers over. Semantics are lax.conv_general_dilated's with explicit (lo, hi) padding
// (>= 0), window strides, rhs dilation and feature_group_count; dtypes f32 and bf16 (bf16 only where oneDNN has a
// kernel for it: `kdjax_onednn_probe` tells Python up front, so it can refuse cleanly at trace time).
//
// Primitives are created once per (kind, shape, dtype, threads) and cached behind a mutex; executing one is
// thread-safe because every execution gets its own scratchpad (scratchpad_mode::user).
//
// Threading (KDJAX_ONEDNN_THREADING, read once):
//   "xla" (default): oneDNN runs single-threaded inside each thread, and the batch is split into chunks that run
//         on XLA's own intra-op thread pool (the FFI ThreadPool), so no second pool of threads competes with
//         XLA's Eigen threads. Chunks are claimed from an atomic counter, and the calling thread works too, so a
//         busy pool only makes it slower, never deadlocks it.
//   "omp": oneDNN's own OpenMP threads (as many as XLA's pool has), started from the calling thread.
// Both are measured in benchmarks/README.md.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#define KDJAX_HAVE_OMP 1
#else
#define KDJAX_HAVE_OMP 0
#endif

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum Kind : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// Everything that identifies a primitive: the convolution in JAX's terms plus dtype, kind and thread count.
struct Conv {
  int64_t n, h, w, c;           // input (N, H, W, C)
  int64_t kh, kw, o;            // kernel (KH, KW, C/G, O)
  int64_t oh, ow;               // output spatial size
  int64_t sh, sw;               // window strides
  int64_t plh, plw, prh, prw;   // padding lo / hi
  int64_t dh, dw;               // rhs dilation (JAX: 1 = none)
  int64_t groups;
  int64_t dtype;                // 0 f32, 1 bf16
  int64_t kind;
  int64_t nthr;

  std::vector<int64_t> Key() const {
    return {n, h, w, c, kh, kw, o, oh, ow, sh, sw, plh, plw, prh, prw, dh, dw, groups, dtype, kind, nthr};
  }
};

memory::data_type DnnlType(int64_t dtype) { return dtype == 1 ? memory::data_type::bf16 : memory::data_type::f32; }

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // never destroyed: used at exit
  return *engine;
}

std::atomic<int> threading_mode{-1};

int Threading() {  // 0: xla (single-threaded oneDNN per chunk), 1: omp
  int mode = threading_mode.load(std::memory_order_relaxed);
  if (mode < 0) {
    const char* v = std::getenv("KDJAX_ONEDNN_THREADING");
    mode = (v != nullptr && std::string(v) == "omp") ? 1 : 0;
    threading_mode.store(mode);
  }
  return mode;
}

std::atomic<int> chunks_per_thread{-1};

int ChunksPerThread() {  // KDJAX_ONEDNN_CHUNKS_PER_THREAD, default 1 (measured: benchmarks/README.md)
  int k = chunks_per_thread.load(std::memory_order_relaxed);
  if (k < 1) {
    const char* v = std::getenv("KDJAX_ONEDNN_CHUNKS_PER_THREAD");
    k = v != nullptr ? std::max(1, std::atoi(v)) : 1;
    chunks_per_thread.store(k);
  }
  return k;
}

// Tells oneDNN how many threads the current thread may use (OpenMP runtime: a per-thread setting).
void UseThreads(int64_t nthr) {
#if KDJAX_HAVE_OMP
  if (omp_get_max_threads() != nthr) omp_set_num_threads(static_cast<int>(nthr));
#else
  (void)nthr;
#endif
}

// A cached primitive with the memory descriptors needed to run it on user buffers.
struct Entry {
  dnnl::primitive prim;
  memory::desc src, wei_user, wei_prim, dst;  // src/dst: NHWC (dst = diff_src for backward data)
  bool reorder_wei = false;
  dnnl::primitive wei_reorder;  // user -> primitive layout (forward, backward data); primitive -> user (weights)
  size_t scratch_bytes = 0;
  std::string impl;
};

memory::desc ActMd(int64_t n, int64_t c, int64_t h, int64_t w, memory::data_type dt) {
  return memory::desc({n, c, h, w}, dt, memory::format_tag::nhwc);
}

memory::desc WeiMd(const Conv& p, memory::data_type dt, bool any) {
  const int64_t g = p.groups;
  if (g == 1) {
    return memory::desc({p.o, p.c, p.kh, p.kw}, dt, any ? memory::format_tag::any : memory::format_tag::hwio);
  }
  return memory::desc({g, p.o / g, p.c / g, p.kh, p.kw}, dt, any ? memory::format_tag::any : memory::format_tag::hwigo);
}

// Creates the primitive of `p` (throws dnnl::error when oneDNN has no implementation).
std::shared_ptr<Entry> Create(const Conv& p) {
  auto e = std::make_shared<Entry>();
  const auto dt = DnnlType(p.dtype);
  const memory::dims strides = {p.sh, p.sw}, dilates = {p.dh - 1, p.dw - 1};
  const memory::dims pad_l = {p.plh, p.plw}, pad_r = {p.prh, p.prw};
  const auto src = ActMd(p.n, p.c, p.h, p.w, dt), dst = ActMd(p.n, p.o, p.oh, p.ow, dt);
  const auto wei_any = WeiMd(p, dt, true);
  // weight gradients are computed in f32 whatever the dtype (bf16: oneDNN accumulates in f32 anyway), so chunk
  // partial sums add up in f32 and the one rounding to bf16 happens in the final reorder to the user's layout
  const auto diff_wei_any = WeiMd(p, memory::data_type::f32, true);
  e->src = src;
  e->dst = dst;
  e->wei_user = WeiMd(p, dt, false);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto& eng = Engine();
  const auto algo = dnnl::algorithm::convolution_direct;
  const auto prop = dnnl::prop_kind::forward_training;
#if DNNL_VERSION_MAJOR >= 3
  auto fwd = dnnl::convolution_forward::primitive_desc(eng, prop, algo, src, wei_any, dst, strides, dilates, pad_l,
                                                       pad_r, attr);
#else
  auto fwd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(prop, algo, src, wei_any, dst, strides, dilates, pad_l, pad_r), attr, eng);
#endif
  if (p.kind == kForward) {
    e->wei_prim = fwd.weights_desc();
    e->scratch_bytes = fwd.scratchpad_desc().get_size();
    e->impl = fwd.impl_info_str();
    e->impl += " (scratchpad " + std::to_string(fwd.scratchpad_desc().get_size() >> 10) + " KiB)";
    e->prim = dnnl::convolution_forward(fwd);
  } else if (p.kind == kBackwardData) {
#if DNNL_VERSION_MAJOR >= 3
    auto bwd = dnnl::convolution_backward_data::primitive_desc(eng, algo, src, wei_any, dst, strides, dilates, pad_l,
                                                               pad_r, fwd, attr);
#else
    auto bwd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(algo, src, wei_any, dst, strides, dilates, pad_l, pad_r), attr, eng, fwd);
#endif
    e->wei_prim = bwd.weights_desc();
    e->scratch_bytes = bwd.scratchpad_desc().get_size();
    e->impl = bwd.impl_info_str();
    e->impl += " (scratchpad " + std::to_string(bwd.scratchpad_desc().get_size() >> 10) + " KiB)";
    e->prim = dnnl::convolution_backward_data(bwd);
  } else {
#if DNNL_VERSION_MAJOR >= 3
    auto bwd = dnnl::convolution_backward_weights::primitive_desc(eng, algo, src, diff_wei_any, dst, strides,
                                                                  dilates, pad_l, pad_r, fwd, attr);
#else
    auto bwd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(algo, src, diff_wei_any, dst, strides, dilates, pad_l, pad_r), attr,
        eng, fwd);
#endif
    e->wei_prim = bwd.diff_weights_desc();
    e->scratch_bytes = bwd.scratchpad_desc().get_size();
    e->impl = bwd.impl_info_str();
    e->impl += " (scratchpad " + std::to_string(bwd.scratchpad_desc().get_size() >> 10) + " KiB)";
    e->prim = dnnl::convolution_backward_weights(bwd);
  }
  e->reorder_wei = e->wei_prim != e->wei_user;
  if (e->reorder_wei) {
    e->wei_reorder = p.kind == kBackwardWeights
                         ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->wei_prim, eng, e->wei_user))
                         : dnnl::reorder(dnnl::reorder::primitive_desc(eng, e->wei_user, eng, e->wei_prim));
  }
  return e;
}

std::shared_ptr<Entry> Get(const Conv& p) {
  static std::mutex mu;
  static auto* cache = new std::map<std::vector<int64_t>, std::shared_ptr<Entry>>();
  const auto key = p.Key();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  auto e = Create(p);  // outside the lock: creation JIT-compiles kernels; a duplicate on a race is harmless
  std::lock_guard<std::mutex> lock(mu);
  return cache->emplace(key, e).first->second;
}

// Per-thread grow-only buffer (scratchpads, reordered weights): no malloc/page faults per call.
struct ThreadBuffers {
  std::vector<std::unique_ptr<char[]>> bufs;
  std::vector<size_t> sizes;
  char* Get(int slot, size_t bytes) {
    if (bufs.size() <= static_cast<size_t>(slot)) {
      bufs.resize(slot + 1);
      sizes.resize(slot + 1, 0);
    }
    if (sizes[slot] < bytes) {
      bufs[slot].reset(new char[bytes + 64]);
      sizes[slot] = bytes;
    }
    auto addr = reinterpret_cast<uintptr_t>(bufs[slot].get());
    return reinterpret_cast<char*>((addr + 63) & ~uintptr_t{63});
  }
};

char* Scratch(int slot, size_t bytes) {
  thread_local ThreadBuffers buffers;
  return buffers.Get(slot, bytes);
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// Runs fn(0..count-1) on the calling thread and XLA's intra-op pool (see the file comment).
template <typename F>
void ParallelFor(ffi::ThreadPool* pool, int64_t count, F fn) {
  if (count <= 1 || pool == nullptr) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    int64_t done = 0;
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  // `fn` lives on this stack frame; a task that starts after every chunk is claimed never touches it
  auto work = [state, count, &fn] {
    int64_t i;
    while ((i = state->next.fetch_add(1)) < count) {
      fn(i);
      std::lock_guard<std::mutex> lock(state->mu);
      if (++state->done == count) state->cv.notify_all();
    }
  };
  for (int64_t t = 1; t < count; ++t) pool->Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done == count; });
}

std::atomic<int64_t> last_pool_threads{0};  // what XLA's pool reported last (kdjax_onednn_info)

int64_t PoolThreads(ffi::ThreadPool& pool) {
  int64_t t = pool.num_threads();
  last_pool_threads.store(t, std::memory_order_relaxed);
  if (t <= 0) t = std::max(1u, std::thread::hardware_concurrency());
  return t;
}

// Runs one primitive of `p` over the whole batch on user buffers. x: src (fwd, bwd weights) or diff_src (bwd data);
// wei: weights or diff_weights; y: dst or diff_dst.
ffi::Error Run(Conv p, ffi::ThreadPool& pool, char* x, char* wei, char* y) {
  if (p.n == 0) {
    if (p.kind == kBackwardWeights) std::memset(wei, 0, WeiMd(p, DnnlType(p.dtype), false).get_size());
    if (p.kind == kBackwardData) std::memset(x, 0, ActMd(0, p.c, p.h, p.w, DnnlType(p.dtype)).get_size());
    return ffi::Error::Success();
  }
  const int64_t threads = PoolThreads(pool);
  const size_t esize = p.dtype == 1 ? 2 : 4;
  const size_t x_image = p.h * p.w * p.c * esize, y_image = p.oh * p.ow * p.o * esize;
  try {
    // oneDNN's OpenMP threads: when asked for, and for batches too small to give every XLA thread a chunk
    if (Threading() == 1 || (KDJAX_HAVE_OMP && p.n < threads)) {
      p.nthr = threads;
      UseThreads(threads);
      auto e = Get(p);
      auto& eng = Engine();
      auto& s = Stream();
      memory xm(e->src, eng, x), ym(e->dst, eng, y), wu(e->wei_user, eng, wei);
      memory wp = e->reorder_wei ? memory(e->wei_prim, eng, Scratch(1, e->wei_prim.get_size())) : wu;
      memory sp(memory::desc({static_cast<int64_t>(e->scratch_bytes)}, memory::data_type::u8, memory::format_tag::x),
                eng, Scratch(0, e->scratch_bytes));
      if (e->reorder_wei && p.kind != kBackwardWeights) e->wei_reorder.execute(s, {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, wp}});
      if (p.kind == kForward) {
        e->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, sp}});
      } else if (p.kind == kBackwardData) {
        e->prim.execute(s, {{DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DIFF_DST, ym},
                            {DNNL_ARG_SCRATCHPAD, sp}});
      } else {
        e->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_WEIGHTS, wp}, {DNNL_ARG_DIFF_DST, ym},
                            {DNNL_ARG_SCRATCHPAD, sp}});
        if (e->reorder_wei) e->wei_reorder.execute(s, {{DNNL_ARG_FROM, wp}, {DNNL_ARG_TO, wu}});
      }
      s.wait();
      return ffi::Error::Success();
    }

    // "xla": batch chunks on XLA's pool, oneDNN single-threaded in each
    // more chunks than threads: on a shared machine a thread that is descheduled then holds up less of the call
    const int64_t chunks = std::min(threads * ChunksPerThread(), p.n);
    const int64_t base = p.n / chunks, extra = p.n % chunks;
    auto chunk_n = [&](int64_t i) { return base + (i < extra ? 1 : 0); };
    auto chunk_start = [&](int64_t i) { return i * base + std::min(i, extra); };
    p.nthr = 1;
    // weights in the primitive's layout: reordered once (forward, backward data) and shared by every chunk;
    // weight gradients: one partial sum per chunk, added up after
    std::shared_ptr<Entry> e0;
    {
      Conv q = p;
      q.n = chunk_n(0);
      UseThreads(1);
      e0 = Get(q);
    }
    auto& eng = Engine();
    const size_t wbytes = e0->wei_prim.get_size();
    char* wei_prim = wei;
    std::vector<char*> partial(chunks, nullptr);
    std::vector<std::unique_ptr<char[]>> owned;
    if (p.kind != kBackwardWeights && e0->reorder_wei) {
      wei_prim = Scratch(1, wbytes);
      memory wu(e0->wei_user, eng, wei), wp(e0->wei_prim, eng, wei_prim);
      e0->wei_reorder.execute(Stream(), {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, wp}});
      Stream().wait();
    }
    if (p.kind == kBackwardWeights) {
      for (int64_t i = 0; i < chunks; ++i) {
        if (i == 0 && !e0->reorder_wei) {
          partial[i] = wei;
        } else {
          owned.emplace_back(new char[wbytes + 64]);
          auto addr = reinterpret_cast<uintptr_t>(owned.back().get());
          partial[i] = reinterpret_cast<char*>((addr + 63) & ~uintptr_t{63});
        }
      }
    }
    std::string error;
    std::mutex error_mu;
    ParallelFor(&pool, chunks, [&](int64_t i) {
      try {
        Conv q = p;
        q.n = chunk_n(i);
        UseThreads(1);
        auto e = Get(q);
        auto& s = Stream();
        char* xi = x + chunk_start(i) * x_image;
        char* yi = y + chunk_start(i) * y_image;
        memory xm(e->src, eng, xi), ym(e->dst, eng, yi);
        memory sp(memory::desc({static_cast<int64_t>(e->scratch_bytes)}, memory::data_type::u8,
                               memory::format_tag::x),
                  eng, Scratch(0, e->scratch_bytes));
        if (p.kind == kForward) {
          memory wp(e->wei_prim, eng, wei_prim);
          e->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DST, ym},
                              {DNNL_ARG_SCRATCHPAD, sp}});
        } else if (p.kind == kBackwardData) {
          memory wp(e->wei_prim, eng, wei_prim);
          e->prim.execute(s, {{DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_WEIGHTS, wp}, {DNNL_ARG_DIFF_DST, ym},
                              {DNNL_ARG_SCRATCHPAD, sp}});
        } else {
          memory wp(e->wei_prim, eng, partial[i]);
          e->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_WEIGHTS, wp}, {DNNL_ARG_DIFF_DST, ym},
                              {DNNL_ARG_SCRATCHPAD, sp}});
        }
        s.wait();
      } catch (const std::exception& ex) {
        std::lock_guard<std::mutex> lock(error_mu);
        error = ex.what();
      }
    });
    if (!error.empty()) return ffi::Error::Internal("oneDNN convolution: " + error);
    if (p.kind == kBackwardWeights) {
      // sum the partial weight gradients (in the primitive's layout: a plain elementwise sum over its bytes)
      if (chunks > 1) {
        const int64_t count = static_cast<int64_t>(wbytes / sizeof(float));
        float* acc = reinterpret_cast<float*>(partial[0]);  // f32 whatever the dtype (see Create)
        for (int64_t i = 1; i < chunks; ++i) {
          const float* src = reinterpret_cast<const float*>(partial[i]);
          for (int64_t k = 0; k < count; ++k) acc[k] += src[k];
        }
      }
      if (e0->reorder_wei) {
        memory wp(e0->wei_prim, eng, partial[0]), wu(e0->wei_user, eng, wei);
        e0->wei_reorder.execute(Stream(), {{DNNL_ARG_FROM, wp}, {DNNL_ARG_TO, wu}});
        Stream().wait();
      }
    }
    return ffi::Error::Success();
  } catch (const std::exception& ex) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + ex.what());
  }
}

int64_t DtypeCode(ffi::DataType t) {
  if (t == ffi::DataType::F32) return 0;
  if (t == ffi::DataType::BF16) return 1;
  return -1;
}

// Fills `p` from the attributes and the (N,H,W,C) input shape, (KH,KW,C/G,O) kernel shape, (N,OH,OW,O) output.
ffi::Error MakeConv(Conv& p, ffi::Span<const int64_t> xs, ffi::Span<const int64_t> ws, ffi::Span<const int64_t> ys,
                    ffi::DataType dtype, ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                    ffi::Span<const int64_t> dilation, int64_t groups, int64_t kind) {
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4 || strides.size() != 2 || padding.size() != 4 ||
      dilation.size() != 2) {
    return ffi::Error::InvalidArgument("oneDNN convolution: expects 4-D NHWC/HWIO operands and 2-D window attributes");
  }
  p.dtype = DtypeCode(dtype);
  if (p.dtype < 0) return ffi::Error::InvalidArgument("oneDNN convolution: only f32 and bf16");
  p.n = xs[0], p.h = xs[1], p.w = xs[2], p.c = xs[3];
  p.kh = ws[0], p.kw = ws[1], p.o = ws[3];
  p.oh = ys[1], p.ow = ys[2];
  p.sh = strides[0], p.sw = strides[1];
  p.plh = padding[0], p.prh = padding[1], p.plw = padding[2], p.prw = padding[3];
  p.dh = dilation[0], p.dw = dilation[1];
  p.groups = groups;
  p.kind = kind;
  p.nthr = 1;
  if (groups < 1 || p.c % groups != 0 || p.o % groups != 0 || ws[2] * groups != p.c || ys[0] != p.n ||
      ys[3] != p.o) {
    return ffi::Error::InvalidArgument("oneDNN convolution: inconsistent shapes");
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                       ffi::Span<const int64_t> dilation, int64_t groups) {
  Conv p;
  if (auto err = MakeConv(p, x.dimensions(), w.dimensions(), y->dimensions(), x.element_type(), strides, padding,
                          dilation, groups, kForward);
      !err.success()) {
    return err;
  }
  return Run(p, pool, static_cast<char*>(x.untyped_data()), static_cast<char*>(w.untyped_data()),
             static_cast<char*>(y->untyped_data()));
}

// `order` is not read: it only makes XLA run this after the layer's weight gradient (see conv.py).
ffi::Error BackwardDataImpl(ffi::ThreadPool pool, ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::AnyBuffer order,
                            ffi::Result<ffi::AnyBuffer> dx, ffi::Span<const int64_t> strides,
                            ffi::Span<const int64_t> padding, ffi::Span<const int64_t> dilation, int64_t groups) {
  (void)order;
  Conv p;
  if (auto err = MakeConv(p, dx->dimensions(), w.dimensions(), dy.dimensions(), dy.element_type(), strides, padding,
                          dilation, groups, kBackwardData);
      !err.success()) {
    return err;
  }
  return Run(p, pool, static_cast<char*>(dx->untyped_data()), static_cast<char*>(w.untyped_data()),
             static_cast<char*>(dy.untyped_data()));
}

ffi::Error BackwardWeightsImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                               ffi::Result<ffi::AnyBuffer> dw, ffi::Span<const int64_t> strides,
                               ffi::Span<const int64_t> padding, ffi::Span<const int64_t> dilation, int64_t groups) {
  Conv p;
  if (auto err = MakeConv(p, x.dimensions(), dw->dimensions(), dy.dimensions(), x.element_type(), strides, padding,
                          dilation, groups, kBackwardWeights);
      !err.success()) {
    return err;
  }
  return Run(p, pool, static_cast<char*>(x.untyped_data()), static_cast<char*>(dw->untyped_data()),
             static_cast<char*>(dy.untyped_data()));
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KdjaxOnednnConvForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("strides")
                                  .Attr<ffi::Span<const int64_t>>("padding")
                                  .Attr<ffi::Span<const int64_t>>("dilation")
                                  .Attr<int64_t>("groups"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KdjaxOnednnConvBackwardData, BackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("strides")
                                  .Attr<ffi::Span<const int64_t>>("padding")
                                  .Attr<ffi::Span<const int64_t>>("dilation")
                                  .Attr<int64_t>("groups"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KdjaxOnednnConvBackwardWeights, BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("strides")
                                  .Attr<ffi::Span<const int64_t>>("padding")
                                  .Attr<ffi::Span<const int64_t>>("dilation")
                                  .Attr<int64_t>("groups"));

// ---- plain C entry points for Python (ctypes): what was built, and whether a dtype / shape is supported ----

namespace {
void CopyOut(const std::string& s, char* out, int64_t len) {
  if (out == nullptr || len <= 0) return;
  std::strncpy(out, s.c_str(), static_cast<size_t>(len - 1));
  out[len - 1] = '\0';
}
}  // namespace

// oneDNN version, threading runtime, the ISA it dispatches to, and this library's threading mode.
extern "C" int kdjax_onednn_info(char* out, int64_t len) {
  try {
    const dnnl_version_t* v = dnnl_version();
    const char* runtime = DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP   ? "omp"
                          : DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_TBB ? "tbb"
                          : DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_SEQ ? "seq"
                                                                            : "other";
    const auto effective = dnnl::get_effective_cpu_isa();
    std::string isa = std::to_string(static_cast<int>(effective));
    const std::pair<dnnl::cpu_isa, const char*> names[] = {
        {dnnl::cpu_isa::sse41, "sse41"}, {dnnl::cpu_isa::avx, "avx"}, {dnnl::cpu_isa::avx2, "avx2"},
        {dnnl::cpu_isa::avx2_vnni, "avx2_vnni"}, {dnnl::cpu_isa::avx512_core, "avx512_core"},
        {dnnl::cpu_isa::avx512_core_vnni, "avx512_core_vnni"}, {dnnl::cpu_isa::avx512_core_bf16, "avx512_core_bf16"},
        {dnnl::cpu_isa::avx512_core_amx, "avx512_core_amx"}};
    for (const auto& [value, name] : names) {
      if (value == effective) isa = name;
    }
    CopyOut("onednn " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
                " runtime=" + runtime + " isa=" + isa + " threading=" + (Threading() == 1 ? "omp" : "xla") +
                " xla_pool_threads=" + std::to_string(last_pool_threads.load()),
            out, len);
    return 1;
  } catch (const std::exception& ex) {
    CopyOut(ex.what(), out, len);
    return 0;
  }
}

// The implementation oneDNN picks for one convolution (params: n h w c kh kw o oh ow sh sw plh plw prh prw dh dw
// groups dtype kind nthr); returns 0 and the error text when it has none.
extern "C" int kdjax_onednn_impl(const int64_t* q, char* out, int64_t len) {
  Conv p{q[0], q[1],  q[2],  q[3],  q[4],  q[5],  q[6],  q[7],  q[8],  q[9], q[10],
         q[11], q[12], q[13], q[14], q[15], q[16], q[17], q[18], q[19], q[20]};
  try {
    UseThreads(p.nthr);
    CopyOut(Get(p)->impl, out, len);
    return 1;
  } catch (const std::exception& ex) {
    CopyOut(ex.what(), out, len);
    return 0;
  }
}

// Sets the batch chunks per XLA thread ("xla" threading) at run time; returns the previous value.
extern "C" int kdjax_onednn_set_chunks_per_thread(int k) {
  const int previous = ChunksPerThread();
  chunks_per_thread.store(std::max(1, k));
  return previous;
}

// Switches the threading mode at run time (benchmarks compare both in one process); returns the previous one.
extern "C" int kdjax_onednn_set_threading(int mode) {
  const int previous = Threading();
  threading_mode.store(mode == 1 ? 1 : 0);
  return previous;
}
