// models::DecoderState: the beams of a sentence share one copy of its cross-attention memory,
// and dropping finished sentences releases theirs without changing what the others compute.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "loom/models/encoder_decoder.h"
#include "support/paths.h"

namespace loom::models {
namespace {

std::string marian() { return std::string(LOOM_TEST_DATA) + "/hf-tiny/marian-en-zh"; }

torch::Tensor ids(const std::vector<std::vector<int64_t>>& rows, int64_t pad) {
  size_t s = 0;
  for (const auto& r : rows) s = std::max(s, r.size());
  torch::Tensor t = torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(s)}, pad, torch::kInt64);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t j = 0; j < rows[i].size(); ++j) t[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = rows[i][j];
  }
  return t;
}

TEST(DecoderStateTest, BeamsShareSourceMemoryAndDroppedSentencesAreReleased) {
  c10::InferenceMode inference;
  auto model = load_encoder_decoder(marian());
  const int64_t pad = 733;  // the fixture's pad_token_id
  const std::vector<std::vector<int64_t>> src = {{5, 6, 7, 2}, {8, 9, 2}, {10, 11, 12, 13, 2}, {14, 2}};
  torch::Tensor input = ids(src, pad);
  EncoderOutput enc = model->encode(input, input.ne(pad));
  const int64_t beams = 2, start = model->decoder_start_token_id();
  DecoderState state;
  model->init_state(state, enc, beams);
  EXPECT_EQ(state.rows(), 8);
  EXPECT_EQ(state.cross_k(0).size(0), 4);  // one entry per source, not per beam
  EXPECT_TRUE(torch::equal(state.cross_rows(), torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 2, 2, 3, 3})));
  model->decode(torch::full({8, 1}, start, torch::kInt64), enc, &state);
  // sentences 1 and 3 finish; sentence 2's beams swap
  state.reorder(torch::tensor(std::vector<int64_t>{0, 1, 5, 4}));
  EXPECT_EQ(state.cross_k(0).size(0), 2);  // 2 of 4 entries read: compacted
  EXPECT_TRUE(torch::equal(state.cross_rows(), torch::tensor(std::vector<int64_t>{0, 0, 1, 1})));
  torch::Tensor next = torch::tensor(std::vector<int64_t>{20, 21, 22, 23}).unsqueeze(1);  // [4, 1]
  torch::Tensor logits = model->decode(next, enc, &state);                                 // [4, 1, V]

  // the same two sentences decoded alone
  torch::Tensor input2 = ids({src[0], src[2]}, pad);
  EncoderOutput enc2 = model->encode(input2, input2.ne(pad));
  DecoderState alone;
  model->init_state(alone, enc2, beams);
  model->decode(torch::full({4, 1}, start, torch::kInt64), enc2, &alone);
  torch::Tensor want = model->decode(next, enc2, &alone);  // [4, 1, V]
  EXPECT_LT((logits - want).abs().max().item<float>(), 1e-4f);
  // dropping everything leaves an empty state
  state.reorder(torch::empty({0}, torch::kInt64));
  EXPECT_EQ(state.rows(), 0);
  EXPECT_EQ(state.cross_k(0).size(0), 0);
}

}  // namespace
}  // namespace loom::models
