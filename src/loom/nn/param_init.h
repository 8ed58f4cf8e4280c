// Construction without random initialisation, for models whose every parameter is about to be
// replaced by checkpoint tensors (models::Seq2SeqModel::load): the random values would be
// computed and written only to be thrown away, and writing them makes every page of the model
// resident once (the float32 model's size in peak memory before the checkpoint is even read).
#pragma once

namespace loom::nn {

/// While an instance lives on this thread, nn::Linear (LinearImpl) creates its weight with
/// torch::empty instead of normal(0, 0.02) values: uninitialised memory that must be
/// overwritten (or replaced with Tensor::set_) before use. Nests; other threads are unaffected.
class SkipRandomInit {
 public:
  SkipRandomInit();
  ~SkipRandomInit();
  SkipRandomInit(const SkipRandomInit&) = delete;
  SkipRandomInit& operator=(const SkipRandomInit&) = delete;
};

/// True while a SkipRandomInit lives on this thread.
bool random_init_skipped();

}  // namespace loom::nn
