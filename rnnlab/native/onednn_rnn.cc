// oneDNN's RNN primitives (the kernels PyTorch's nn.LSTM / GRU / RNN run on a CPU) as XLA FFI
// handlers: L recurrent layers in one or both directions, forward (training: with the workspace
// the backward reads) and backward. Built and loaded by rnnlab/native/__init__.py.
//
// Layouts (oneDNN's names): x [T, N, C] (tnc), h0/c0/hT/cT [L, D, N, H] (ldnc), weights
// [L, D, C, G*H] and [L, D, H, G*H] (ldigo: gates in oneDNN's order), bias [L, D, Gb*H] (ldgo),
// y [T, N, H] (both directions: [T, N, 2H] concatenated, or summed). D = 2 for both directions.
// Direction: 0 left to right, 1 right to left, 2 both concatenated, 3 both summed.
// Cells: 0 LSTM (i, f, c~, o), 1 linear-before-reset GRU (u, r, o; bias u, r, o, u'),
// 2 Elman tanh, 3 Elman relu, 4 GRU with the reset before the recurrent matmul (u, r, o).

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

enum Cell : int64_t { kLstm = 0, kGru = 1, kTanh = 2, kRelu = 3, kGruBefore = 4 };

int64_t Gates(int64_t cell) {
  return cell == kLstm ? 4 : (cell == kGru || cell == kGruBefore) ? 3 : 1;
}
int64_t BiasGates(int64_t cell) { return cell == kGruBefore ? 3 : Gates(cell) + (cell == kGru); }

dnnl::engine &Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Shape {
  int64_t cell, T, N, C, H, L, direction;
  int64_t D() const { return direction >= 2 ? 2 : 1; }
  auto key() const { return std::make_tuple(cell, T, N, C, H, L, direction); }
};

// The memory descriptors of a layer; weights as the caller lays them out (ldigo).
struct Descs {
  memory::desc x, h, c, wl, wi, b, y;
  explicit Descs(const Shape &s) {
    const int64_t G = Gates(s.cell);
    x = memory::desc({s.T, s.N, s.C}, dt::f32, tag::tnc);
    h = memory::desc({s.L, s.D(), s.N, s.H}, dt::f32, tag::ldnc);
    c = s.cell == kLstm ? h : memory::desc();
    wl = memory::desc({s.L, s.D(), s.C, G, s.H}, dt::f32, tag::ldigo);
    wi = memory::desc({s.L, s.D(), s.H, G, s.H}, dt::f32, tag::ldigo);
    b = memory::desc({s.L, s.D(), BiasGates(s.cell), s.H}, dt::f32, tag::ldgo);
    y = memory::desc({s.T, s.N, s.direction == 2 ? 2 * s.H : s.H}, dt::f32, tag::tnc);
  }
};

memory::desc Any(const memory::desc &d) {
  return memory::desc(d.get_dims(), dt::f32, tag::any);
}

dnnl::rnn_direction Direction(const Shape &s) {
  using d = dnnl::rnn_direction;
  const d all[] = {d::unidirectional_left2right, d::unidirectional_right2left,
                   d::bidirectional_concat, d::bidirectional_sum};
  if (s.direction < 0 || s.direction > 3) throw std::invalid_argument("direction not in 0-3");
  return all[s.direction];
}

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // one per call: concurrent calls
  return attr;
}

dnnl::primitive_desc ForwardPd(const Shape &s, dnnl::prop_kind prop) {
  const Descs d(s);
  auto &e = Engine();
  const auto dir = Direction(s);
  const auto wl = Any(d.wl), wi = Any(d.wi);
  switch (s.cell) {
    case kLstm:
      return dnnl::lstm_forward::primitive_desc(e, prop, dir, d.x, d.h, d.c, wl, wi, d.b, d.y,
                                                d.h, d.c, Attr());
    case kGru:
      return dnnl::lbr_gru_forward::primitive_desc(e, prop, dir, d.x, d.h, wl, wi, d.b, d.y,
                                                   d.h, Attr());
    case kGruBefore:
      return dnnl::gru_forward::primitive_desc(e, prop, dir, d.x, d.h, wl, wi, d.b, d.y, d.h,
                                               Attr());
    default:
      return dnnl::vanilla_rnn_forward::primitive_desc(
          e, prop, s.cell == kTanh ? dnnl::algorithm::eltwise_tanh : dnnl::algorithm::eltwise_relu,
          dir, d.x, d.h, wl, wi, d.b, d.y, d.h, Attr());
  }
}

dnnl::primitive_desc BackwardPd(const Shape &s) {
  const Descs d(s);
  auto &e = Engine();
  const auto dir = Direction(s);
  const auto fwd = dnnl::prop_kind::forward_training, bwd = dnnl::prop_kind::backward;
  const auto wl = Any(d.wl), wi = Any(d.wi);
  switch (s.cell) {
    case kLstm: {
      dnnl::lstm_forward::primitive_desc hint(e, fwd, dir, d.x, d.h, d.c, wl, wi, d.b, d.y, d.h,
                                              d.c, Attr());
      return dnnl::lstm_backward::primitive_desc(e, bwd, dir, d.x, d.h, d.c, wl, wi, d.b, d.y,
                                                 d.h, d.c, d.x, d.h, d.c, wl, wi, d.b, d.y, d.h,
                                                 d.c, hint, Attr());
    }
    case kGru: {
      dnnl::lbr_gru_forward::primitive_desc hint(e, fwd, dir, d.x, d.h, wl, wi, d.b, d.y, d.h,
                                                 Attr());
      return dnnl::lbr_gru_backward::primitive_desc(e, bwd, dir, d.x, d.h, wl, wi, d.b, d.y, d.h,
                                                    d.x, d.h, wl, wi, d.b, d.y, d.h, hint, Attr());
    }
    case kGruBefore: {
      dnnl::gru_forward::primitive_desc hint(e, fwd, dir, d.x, d.h, wl, wi, d.b, d.y, d.h, Attr());
      return dnnl::gru_backward::primitive_desc(e, bwd, dir, d.x, d.h, wl, wi, d.b, d.y, d.h, d.x,
                                                d.h, wl, wi, d.b, d.y, d.h, hint, Attr());
    }
    default: {
      const auto act =
          s.cell == kTanh ? dnnl::algorithm::eltwise_tanh : dnnl::algorithm::eltwise_relu;
      dnnl::vanilla_rnn_forward::primitive_desc hint(e, fwd, act, dir, d.x, d.h, wl, wi, d.b, d.y,
                                                     d.h, Attr());
      return dnnl::vanilla_rnn_backward::primitive_desc(e, bwd, act, dir, d.x, d.h, wl, wi, d.b,
                                                        d.y, d.h, d.x, d.h, wl, wi, d.b, d.y, d.h,
                                                        hint, Attr());
    }
  }
}

// A primitive with its descriptor, made once per shape and kind.
struct Compiled {
  dnnl::primitive_desc pd;
  dnnl::primitive prim;
};

template <typename Make>
const Compiled &Cached(int kind, const Shape &s, Make make) {
  static std::mutex mu;
  static std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>,
                  Compiled>
      cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::tuple_cat(std::make_tuple(kind), s.key());
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto pd = make();
    it = cache.emplace(key, Compiled{pd, dnnl::primitive(pd)}).first;
  }
  return it->second;
}

const Compiled &Forward(const Shape &s, bool training) {
  const auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  return Cached(training ? 1 : 0, s, [&] { return ForwardPd(s, prop); });
}

const Compiled &Backward(const Shape &s) {
  return Cached(2, s, [&] { return BackwardPd(s); });
}

// The primitive's scratchpad: one buffer per calling thread, kept and grown (a fresh allocation
// of tens of MB per call costs page faults that measured as much as the primitive itself).
void *Scratchpad(const memory::desc &d) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < d.get_size()) buffer.resize(d.get_size());
  return buffer.data();
}

memory Wrap(const memory::desc &d, const void *data) {
  return memory(d, Engine(), const_cast<void *>(data));
}

// `user` (in the caller's layout) reordered into the layout the primitive wants.
memory Into(const memory::desc &want, memory user, dnnl::stream &stream) {
  if (want == user.get_desc()) return user;
  memory m(want, Engine());
  dnnl::reorder(user, m).execute(stream, user, m);
  return m;
}

Shape ShapeOf(int64_t cell, int64_t direction, ffi::Buffer<ffi::F32> &x,
              ffi::Buffer<ffi::F32> &h0) {
  const auto xd = x.dimensions(), hd = h0.dimensions();  // h0: [L, D, N, H]
  return Shape{cell, xd[0], xd[1], xd[2], hd[3], hd[0], direction};
}

ffi::Error Failed(const std::exception &e) {
  return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN RNN: ") + e.what());
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                       ffi::Buffer<ffi::F32> wl, ffi::Buffer<ffi::F32> wi,
                       ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> y,
                       ffi::ResultBuffer<ffi::F32> hT, ffi::ResultBuffer<ffi::F32> cT,
                       ffi::ResultBuffer<ffi::U8> ws, int64_t cell, int64_t direction,
                       bool training) {
  try {
    const Shape s = ShapeOf(cell, direction, x, h0);
    const Descs d(s);
    const Compiled &f = Forward(s, training);
    dnnl::stream stream(Engine());
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC_LAYER, Wrap(d.x, x.typed_data())},
        {DNNL_ARG_SRC_ITER, Wrap(d.h, h0.typed_data())},
        {DNNL_ARG_WEIGHTS_LAYER,
         Into(f.pd.weights_desc(0), Wrap(d.wl, wl.typed_data()), stream)},
        {DNNL_ARG_WEIGHTS_ITER, Into(f.pd.weights_desc(1), Wrap(d.wi, wi.typed_data()), stream)},
        {DNNL_ARG_BIAS, Wrap(d.b, b.typed_data())},
        {DNNL_ARG_DST_LAYER, Wrap(d.y, y->typed_data())},
        {DNNL_ARG_DST_ITER, Wrap(d.h, hT->typed_data())},
        {DNNL_ARG_SCRATCHPAD, Wrap(f.pd.scratchpad_desc(), Scratchpad(f.pd.scratchpad_desc()))},
    };
    if (cell == kLstm) {
      args[DNNL_ARG_SRC_ITER_C] = Wrap(d.c, c0.typed_data());
      args[DNNL_ARG_DST_ITER_C] = Wrap(d.c, cT->typed_data());
    }
    if (training) args[DNNL_ARG_WORKSPACE] = Wrap(f.pd.workspace_desc(), ws->typed_data());
    f.prim.execute(stream, args);
    stream.wait();
  } catch (const std::exception &e) {
    return Failed(e);
  }
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h0,
                        ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> wl,
                        ffi::Buffer<ffi::F32> wi, ffi::Buffer<ffi::F32> b,
                        ffi::Buffer<ffi::F32> y, ffi::Buffer<ffi::F32> hT,
                        ffi::Buffer<ffi::F32> cT, ffi::Buffer<ffi::U8> ws,
                        ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> dhT,
                        ffi::Buffer<ffi::F32> dcT, ffi::ResultBuffer<ffi::F32> dx,
                        ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0,
                        ffi::ResultBuffer<ffi::F32> dwl, ffi::ResultBuffer<ffi::F32> dwi,
                        ffi::ResultBuffer<ffi::F32> db, int64_t cell, int64_t direction) {
  try {
    const Shape s = ShapeOf(cell, direction, x, h0);
    const Descs d(s);
    const Compiled &f = Backward(s);
    const auto &pd = f.pd;
    dnnl::stream stream(Engine());
    // oneDNN adds the weight and bias gradients to its outputs: they start at zero.
    memory dwl_m(pd.diff_weights_desc(0), Engine()), dwi_m(pd.diff_weights_desc(1), Engine());
    std::memset(dwl_m.get_data_handle(), 0, dwl_m.get_desc().get_size());
    std::memset(dwi_m.get_data_handle(), 0, dwi_m.get_desc().get_size());
    std::memset(db->typed_data(), 0, db->size_bytes());
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC_LAYER, Wrap(d.x, x.typed_data())},
        {DNNL_ARG_SRC_ITER, Wrap(d.h, h0.typed_data())},
        {DNNL_ARG_WEIGHTS_LAYER, Into(pd.weights_desc(0), Wrap(d.wl, wl.typed_data()), stream)},
        {DNNL_ARG_WEIGHTS_ITER, Into(pd.weights_desc(1), Wrap(d.wi, wi.typed_data()), stream)},
        {DNNL_ARG_BIAS, Wrap(d.b, b.typed_data())},
        {DNNL_ARG_DST_LAYER, Wrap(d.y, y.typed_data())},
        {DNNL_ARG_DST_ITER, Wrap(d.h, hT.typed_data())},
        {DNNL_ARG_WORKSPACE, Wrap(pd.workspace_desc(), ws.typed_data())},
        {DNNL_ARG_DIFF_DST_LAYER, Wrap(d.y, dy.typed_data())},
        {DNNL_ARG_DIFF_DST_ITER, Wrap(d.h, dhT.typed_data())},
        {DNNL_ARG_DIFF_SRC_LAYER, Wrap(d.x, dx->typed_data())},
        {DNNL_ARG_DIFF_SRC_ITER, Wrap(d.h, dh0->typed_data())},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl_m},
        {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi_m},
        {DNNL_ARG_DIFF_BIAS, Wrap(d.b, db->typed_data())},
        {DNNL_ARG_SCRATCHPAD, Wrap(pd.scratchpad_desc(), Scratchpad(pd.scratchpad_desc()))},
    };
    if (cell == kLstm) {
      args[DNNL_ARG_SRC_ITER_C] = Wrap(d.c, c0.typed_data());
      args[DNNL_ARG_DST_ITER_C] = Wrap(d.c, cT.typed_data());
      args[DNNL_ARG_DIFF_DST_ITER_C] = Wrap(d.c, dcT.typed_data());
      args[DNNL_ARG_DIFF_SRC_ITER_C] = Wrap(d.c, dc0->typed_data());
    }
    f.prim.execute(stream, args);
    memory dwl_user = Wrap(d.wl, dwl->typed_data()), dwi_user = Wrap(d.wi, dwi->typed_data());
    dnnl::reorder(dwl_m, dwl_user).execute(stream, dwl_m, dwl_user);
    dnnl::reorder(dwi_m, dwi_user).execute(stream, dwi_m, dwi_user);
    stream.wait();
  } catch (const std::exception &e) {
    return Failed(e);
  }
  return ffi::Error::Success();
}

}  // namespace

// The workspace a training forward writes for the backward, in bytes (asked at trace time).
extern "C" int64_t rnnlab_workspace_bytes(int64_t cell, int64_t direction, int64_t L, int64_t T,
                                          int64_t N, int64_t C, int64_t H) {
  try {
    const Shape s{cell, T, N, C, H, L, direction};
    return static_cast<int64_t>(Forward(s, true).pd.workspace_desc().get_size());
  } catch (const std::exception &) {
    return -1;
  }
}

using F32 = ffi::Buffer<ffi::F32>;
using RF32 = ffi::ResultBuffer<ffi::F32>;

XLA_FFI_DEFINE_HANDLER_SYMBOL(rnnlab_rnn_forward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0 (LSTM; otherwise unread)
                                  .Arg<F32>()  // weights_layer
                                  .Arg<F32>()  // weights_iter
                                  .Arg<F32>()  // bias
                                  .Ret<F32>()  // y
                                  .Ret<F32>()  // hT
                                  .Ret<F32>()  // cT (LSTM; otherwise unwritten)
                                  .Ret<ffi::Buffer<ffi::U8>>()  // workspace (training)
                                  .Attr<int64_t>("cell")
                                  .Attr<int64_t>("direction")
                                  .Attr<bool>("training"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(rnnlab_rnn_backward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Arg<F32>()  // weights_layer
                                  .Arg<F32>()  // weights_iter
                                  .Arg<F32>()  // bias
                                  .Arg<F32>()  // y
                                  .Arg<F32>()  // hT
                                  .Arg<F32>()  // cT
                                  .Arg<ffi::Buffer<ffi::U8>>()  // workspace
                                  .Arg<F32>()  // dy
                                  .Arg<F32>()  // dhT
                                  .Arg<F32>()  // dcT
                                  .Ret<F32>()  // dx
                                  .Ret<F32>()  // dh0
                                  .Ret<F32>()  // dc0
                                  .Ret<F32>()  // d weights_layer
                                  .Ret<F32>()  // d weights_iter
                                  .Ret<F32>()  // d bias
                                  .Attr<int64_t>("cell")
                                  .Attr<int64_t>("direction"));
