#include "loom/generate/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include "loom/core/error.h"
#include "loom/generate/sampling.h"
#include "loom/models/encoder_decoder.h"

namespace loom::generate {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

bool is_eos(int64_t token, const std::vector<int64_t>& eos) {
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

// transformers' BeamHypotheses (one sentence): the best num_beams finished hypotheses.
class BeamHypotheses {
 public:
  BeamHypotheses(int64_t num_beams, double length_penalty, EarlyStopping early_stopping, int64_t max_length)
      : num_beams_(num_beams), length_penalty_(length_penalty), early_stopping_(early_stopping), max_length_(max_length) {}

  // tokens: decoder sequence incl. start token, without the final eos; generated_len: new tokens incl. eos
  void add(const std::vector<int64_t>& tokens, double sum_logprobs, int64_t generated_len, bool eos) {
    const double score = sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
    if (static_cast<int64_t>(beams_.size()) < num_beams_ || score > worst_) {
      beams_.push_back(Beam{score, tokens, eos});
      if (static_cast<int64_t>(beams_.size()) > num_beams_) {
        std::vector<std::pair<double, size_t>> order;
        for (size_t i = 0; i < beams_.size(); ++i) order.emplace_back(beams_[i].score, i);
        std::sort(order.begin(), order.end());
        beams_.erase(beams_.begin() + static_cast<std::ptrdiff_t>(order[0].second));
        worst_ = order[1].first;
      } else {
        worst_ = std::min(score, worst_);
      }
    }
  }

  // best_sum_logprobs: best candidate score of this step; cur_len: decoder length after this step
  bool is_done(double best_sum_logprobs, int64_t cur_len) const {
    if (static_cast<int64_t>(beams_.size()) < num_beams_) return false;
    if (early_stopping_ == EarlyStopping::kTrue) return true;
    int64_t len = cur_len - 1;  // new tokens (decoder prompt = start token)
    if (early_stopping_ == EarlyStopping::kNever && length_penalty_ > 0.0) len = max_length_ - 1;
    return worst_ >= best_sum_logprobs / std::pow(static_cast<double>(len), length_penalty_);
  }

  struct Beam {
    double score;
    std::vector<int64_t> tokens;
    bool eos;
  };
  const std::vector<Beam>& beams() const { return beams_; }

 private:
  int64_t num_beams_;
  double length_penalty_;
  EarlyStopping early_stopping_;
  int64_t max_length_;
  std::vector<Beam> beams_;
  double worst_ = 1e9;
};

// torch::topk(scores, n, 1, largest, sorted) for a few candidates out of a long row: one scan
// with a small heap per row instead of a partial sort of a copy. Equal scores rank by lower
// index. scores [N, M] contiguous float32 -> values [N, n] float32, indices [N, n] int64.
std::pair<torch::Tensor, torch::Tensor> top_candidates(const torch::Tensor& scores, int64_t n) {
  const int64_t rows = scores.size(0), m = scores.size(1);
  TORCH_CHECK(scores.is_contiguous() && n <= m, "top_candidates: bad input");
  torch::Tensor values = torch::empty({rows, n}, torch::kFloat32);  // [N, n]
  torch::Tensor indices = torch::empty({rows, n}, torch::kInt64);   // [N, n]
  const float* data = scores.data_ptr<float>();
  float* out_v = values.data_ptr<float>();
  int64_t* out_i = indices.data_ptr<int64_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    using Item = std::pair<float, int64_t>;
    // "a before b" = a ranks higher: larger value, or equal value and smaller index
    auto better = [](const Item& a, const Item& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::vector<Item> heap;
    for (int64_t r = begin; r < end; ++r) {
      const float* row = data + r * m;
      heap.clear();
      for (int64_t j = 0; j < n; ++j) heap.emplace_back(row[j], j);
      std::make_heap(heap.begin(), heap.end(), better);  // heap.front() = the worst kept item
      float worst = heap.front().first;
      for (int64_t j = n; j < m; ++j) {
        if (!(row[j] > worst)) continue;  // later indices never win ties
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = Item(row[j], j);
        std::push_heap(heap.begin(), heap.end(), better);
        worst = heap.front().first;
      }
      std::sort(heap.begin(), heap.end(), better);
      for (int64_t j = 0; j < n; ++j) {
        out_v[r * n + j] = heap[j].first;
        out_i[r * n + j] = heap[j].second;
      }
    }
  });
  return {values, indices};
}

struct Batch {
  torch::Tensor input_ids;  // [B, S] int64, right-padded
  torch::Tensor mask;       // [B, S] bool
};

Batch make_batch(const std::vector<std::vector<int64_t>>& sources, int64_t pad) {
  int64_t s = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].empty()) fail(Where{"", static_cast<int64_t>(i + 1), "source"}, "empty source (no tokens)");
    s = std::max<int64_t>(s, static_cast<int64_t>(sources[i].size()));
  }
  const int64_t b = static_cast<int64_t>(sources.size());
  Batch batch;
  batch.input_ids = torch::full({b, s}, pad, torch::kInt64);  // [B, S]
  batch.mask = torch::zeros({b, s}, torch::kBool);            // [B, S]
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto m = batch.mask.accessor<bool, 2>();
  for (int64_t i = 0; i < b; ++i) {
    for (size_t j = 0; j < sources[i].size(); ++j) {
      ids[i][static_cast<int64_t>(j)] = sources[i][j];
      m[i][static_cast<int64_t>(j)] = true;
    }
  }
  return batch;
}

void check_token(int64_t id, int64_t vocab, const char* name) {
  if (id < 0 || id >= vocab) fail(Where{"generation options", 0, name}, "token id {} is outside the vocabulary of {} tokens", id, vocab);
}

Hypothesis make_hypothesis(const std::vector<int64_t>& seq, bool eos, int64_t eos_id, float score, int64_t max_new,
                           bool forced_eos) {
  Hypothesis h;
  h.tokens.assign(seq.begin() + 1, seq.end());
  if (eos) h.tokens.push_back(eos_id);
  h.score = score;
  h.capped = static_cast<int64_t>(h.tokens.size()) >= max_new && (!eos || forced_eos);
  return h;
}

// Draws a token from one row of processed scores [V] (float): temperature, top-k, top-p, then
// inverse-CDF over softmax in float64 with one rng() call.
int64_t draw_token(const torch::Tensor& row_scores, const GenerationOptions& o, std::mt19937_64& rng) {
  torch::Tensor logits = row_scores.clone();
  logits.div_(o.temperature);
  apply_top_k(logits, o.top_k);
  apply_top_p(logits, o.top_p);
  return draw_from_logits(logits, rng);
}

// Seed of a sentence's sampler: FNV-1a 64 over the seed and the source token ids.
uint64_t sentence_seed(uint64_t seed, const std::vector<int64_t>& source) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int k = 0; k < 8; ++k) {
      h ^= (v >> (8 * k)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(seed);
  for (int64_t t : source) mix(static_cast<uint64_t>(t));
  return h;
}

std::vector<std::vector<Hypothesis>> greedy(models::EncoderDecoder& model, const models::EncoderOutput& enc,
                                            const std::vector<int64_t>& max_new, const GenerationOptions& o,
                                            const std::vector<std::vector<int64_t>>& sources) {
  const int64_t b = enc.hidden.size(0);
  std::vector<std::mt19937_64> rngs;
  if (o.do_sample) {
    for (int64_t i = 0; i < b; ++i) rngs.emplace_back(sentence_seed(o.seed, sources[static_cast<size_t>(i)]));
  }
  std::vector<std::vector<int64_t>> seqs(b, std::vector<int64_t>{o.decoder_start_token_id});
  std::vector<double> sum_logprobs(b, 0.0);
  std::vector<bool> ended_eos(b, false);
  std::vector<int64_t> active(b), max_len(b);
  for (int64_t i = 0; i < b; ++i) {
    active[i] = i;
    max_len[i] = 1 + max_new[i];
  }
  models::DecoderState state;
  state.reserve(*std::max_element(max_len.begin(), max_len.end()));
  model.init_state(state, enc, 1);
  torch::Tensor input = torch::full({b, 1}, o.decoder_start_token_id, torch::kInt64);  // [R, 1]
  while (!active.empty()) {
    const int64_t r = static_cast<int64_t>(active.size());
    torch::Tensor scores = model.decode(input, enc, &state).select(1, 0);  // [R, V]
    if (!scores.is_contiguous()) scores = scores.contiguous();
    std::vector<const std::vector<int64_t>*> rows(r);
    std::vector<int64_t> row_max(r);
    for (int64_t i = 0; i < r; ++i) {
      rows[i] = &seqs[active[i]];
      row_max[i] = max_len[active[i]];
    }
    apply_logits_processors(scores, rows, row_max, o);
    // renormalize_logits (log_softmax) changes neither the argmax nor the chosen token's
    // log-probability computed below, so greedy search skips it.
    torch::Tensor next = scores.argmax(-1);                                // [R]
    if (o.do_sample) {
      auto next_w = next.accessor<int64_t, 1>();
      for (int64_t i = 0; i < r; ++i) next_w[i] = draw_token(scores[i], o, rngs[static_cast<size_t>(active[i])]);
    }
    torch::Tensor chosen = scores.gather(1, next.unsqueeze(1)).squeeze(1) - scores.logsumexp(-1);  // [R] log-probs
    auto next_a = next.accessor<int64_t, 1>();
    auto chosen_a = chosen.accessor<float, 1>();
    std::vector<int64_t> keep_rows, next_active;
    for (int64_t i = 0; i < r; ++i) {
      const int64_t s = active[i];
      const int64_t tok = next_a[i];
      sum_logprobs[s] += static_cast<double>(chosen_a[i]);
      if (is_eos(tok, o.eos_token_ids)) {
        ended_eos[s] = true;
        continue;
      }
      seqs[s].push_back(tok);
      if (static_cast<int64_t>(seqs[s].size()) >= max_len[s]) continue;
      keep_rows.push_back(i);
      next_active.push_back(s);
    }
    if (next_active.empty()) break;
    torch::Tensor keep = torch::tensor(keep_rows, torch::kInt64);  // [R']
    if (static_cast<int64_t>(keep_rows.size()) < r) state.reorder(keep);
    input = next.index_select(0, keep).unsqueeze(1);  // [R', 1]
    active = std::move(next_active);
  }
  std::vector<std::vector<Hypothesis>> out(b);
  for (int64_t s = 0; s < b; ++s) {
    const int64_t generated = static_cast<int64_t>(seqs[s].size()) - 1 + (ended_eos[s] ? 1 : 0);
    const double score = sum_logprobs[s] / std::pow(static_cast<double>(std::max<int64_t>(generated, 1)), o.length_penalty);
    out[s].push_back(make_hypothesis(seqs[s], ended_eos[s], o.eos_token_ids.front(), static_cast<float>(score),
                                     max_new[s], o.forced_eos_token_id.has_value()));
  }
  return out;
}

std::vector<std::vector<Hypothesis>> beam_search(models::EncoderDecoder& model, const models::EncoderOutput& enc,
                                                 const std::vector<int64_t>& max_new, const GenerationOptions& o) {
  const int64_t b = enc.hidden.size(0);
  const int64_t k = o.num_beams;
  const int64_t n_keep = std::max<int64_t>(2, 1 + static_cast<int64_t>(o.eos_token_ids.size())) * k;
  std::vector<BeamHypotheses> hyps;
  std::vector<int64_t> max_len(b);
  for (int64_t s = 0; s < b; ++s) {
    max_len[s] = 1 + max_new[s];
    hyps.emplace_back(k, o.length_penalty, o.early_stopping, max_len[s]);
  }
  std::vector<int64_t> active(b);  // sentences still searching
  for (int64_t s = 0; s < b; ++s) active[s] = s;
  std::vector<std::vector<int64_t>> seqs(b * k, std::vector<int64_t>{o.decoder_start_token_id});  // per row
  torch::Tensor beam_scores = torch::zeros({b, k}, torch::kFloat32);  // [B, K]
  beam_scores.narrow(1, 1, k - 1).fill_(-1e9);                        // only beam 0 is live at step 0
  beam_scores = beam_scores.view({b * k});                            // [R]
  models::DecoderState state;
  state.reserve(*std::max_element(max_len.begin(), max_len.end()));
  model.init_state(state, enc, k);
  torch::Tensor input = torch::full({b * k, 1}, o.decoder_start_token_id, torch::kInt64);  // [R, 1]
  int64_t cur_len = 1;  // decoder length of every open beam
  while (!active.empty()) {
    const int64_t n = static_cast<int64_t>(active.size());
    const int64_t r = n * k;
    torch::Tensor logits = model.decode(input, enc, &state).select(1, 0);  // [R, V]
    const int64_t vocab = logits.size(1);
    torch::Tensor scores = torch::log_softmax(logits, -1);                  // [R, V]
    std::vector<const std::vector<int64_t>*> rows(r);
    std::vector<int64_t> row_max(r);
    for (int64_t i = 0; i < r; ++i) {
      rows[i] = &seqs[i];
      row_max[i] = max_len[active[i / k]];
    }
    apply_logits_processors(scores, rows, row_max, o);
    if (o.renormalize_logits) scores = torch::log_softmax(scores, -1);     // [R, V]
    scores.add_(beam_scores.unsqueeze(1));                                  // [R, V]
    torch::Tensor top_scores, top_ids;                                      // [N, n_keep] each
    std::tie(top_scores, top_ids) = top_candidates(scores.view({n, k * vocab}), n_keep);
    auto ts = top_scores.accessor<float, 2>();
    auto ti = top_ids.accessor<int64_t, 2>();

    std::vector<std::vector<int64_t>> new_seqs;
    std::vector<float> new_scores;
    std::vector<int64_t> source_rows, new_tokens, next_active;
    new_seqs.reserve(r);
    for (int64_t a = 0; a < n; ++a) {
      const int64_t s = active[a];
      BeamHypotheses& h = hyps[s];
      std::vector<int64_t> rows_a, toks_a;
      std::vector<float> scores_a;
      for (int64_t rank = 0; rank < n_keep; ++rank) {
        const int64_t tok = ti[a][rank] % vocab;
        const int64_t row = a * k + ti[a][rank] / vocab;
        const float sc = ts[a][rank];
        if (is_eos(tok, o.eos_token_ids)) {
          if (rank >= k) continue;
          h.add(seqs[row], static_cast<double>(sc), cur_len, true);
        } else {
          rows_a.push_back(row);
          toks_a.push_back(tok);
          scores_a.push_back(sc);
        }
        if (static_cast<int64_t>(rows_a.size()) == k) break;
      }
      if (static_cast<int64_t>(rows_a.size()) < k) {
        fail("beam search: fewer than num_beams candidates that are not end-of-sequence (vocabulary too small?)");
      }
      bool done = h.is_done(static_cast<double>(ts[a][0]), cur_len + 1);
      if (!done && cur_len + 1 >= max_len[s]) {  // length limit: the open beams become hypotheses
        for (int64_t j = 0; j < k; ++j) {
          std::vector<int64_t> seq = seqs[rows_a[j]];
          seq.push_back(toks_a[j]);
          h.add(seq, static_cast<double>(scores_a[j]), cur_len, false);
        }
        done = true;
      }
      if (done) continue;
      next_active.push_back(s);
      for (int64_t j = 0; j < k; ++j) {
        std::vector<int64_t> seq = seqs[rows_a[j]];
        seq.push_back(toks_a[j]);
        new_seqs.push_back(std::move(seq));
        new_scores.push_back(scores_a[j]);
        source_rows.push_back(rows_a[j]);
        new_tokens.push_back(toks_a[j]);
      }
    }
    ++cur_len;
    if (next_active.empty()) break;
    torch::Tensor index = torch::tensor(source_rows, torch::kInt64);  // [R']
    if (next_active.size() == active.size()) state.reorder_self(index);
    else state.reorder(index);
    seqs = std::move(new_seqs);
    beam_scores = torch::tensor(new_scores, torch::kFloat32);                  // [R']
    input = torch::tensor(new_tokens, torch::kInt64).unsqueeze(1);             // [R', 1]
    active = std::move(next_active);
  }
  std::vector<std::vector<Hypothesis>> out(b);
  for (int64_t s = 0; s < b; ++s) {
    std::vector<const BeamHypotheses::Beam*> sorted;
    for (const auto& beam : hyps[s].beams()) sorted.push_back(&beam);
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto* x, const auto* y) { return x->score < y->score; });
    for (int64_t j = 0; j < o.num_return_sequences && !sorted.empty(); ++j) {
      const auto* beam = sorted.back();
      sorted.pop_back();
      out[s].push_back(make_hypothesis(beam->tokens, beam->eos, o.eos_token_ids.front(), static_cast<float>(beam->score),
                                       max_new[s], o.forced_eos_token_id.has_value()));
    }
  }
  return out;
}

}  // namespace

void apply_logits_processors(torch::Tensor& scores, const std::vector<const std::vector<int64_t>*>& sequences,
                             const std::vector<int64_t>& max_length, const GenerationOptions& o) {
  const int64_t r = scores.size(0);
  const int64_t vocab = scores.size(1);
  TORCH_CHECK(scores.is_contiguous() && scores.scalar_type() == torch::kFloat32, "scores must be contiguous float32");
  float* data = scores.data_ptr<float>();
  auto in_vocab = [vocab](int64_t t) { return t >= 0 && t < vocab; };

  if (o.repetition_penalty != 1.0) {
    const float p = static_cast<float>(o.repetition_penalty);
    for (int64_t i = 0; i < r; ++i) {
      std::set<int64_t> seen(sequences[i]->begin(), sequences[i]->end());
      float* row = data + i * vocab;
      for (int64_t t : seen) {
        if (!in_vocab(t)) continue;
        row[t] = row[t] < 0 ? row[t] * p : row[t] / p;
      }
    }
  }
  if (o.no_repeat_ngram_size > 0) {
    const int64_t ng = o.no_repeat_ngram_size;
    for (int64_t i = 0; i < r; ++i) {
      const std::vector<int64_t>& seq = *sequences[i];
      const int64_t len = static_cast<int64_t>(seq.size());
      if (len + 1 < ng) continue;
      float* row = data + i * vocab;
      const int64_t start = len + 1 - ng;  // the n-1 tokens seq[start, len) are the prefix
      for (int64_t j = 0; j + ng <= len; ++j) {
        if (std::equal(seq.begin() + j, seq.begin() + j + ng - 1, seq.begin() + start) && in_vocab(seq[j + ng - 1])) {
          row[seq[j + ng - 1]] = kNegInf;
        }
      }
    }
  }
  if (!o.bad_words_ids.empty()) {
    for (const auto& bad : o.bad_words_ids) {
      if (bad.size() == 1 && is_eos(bad[0], o.eos_token_ids)) continue;  // transformers drops [eos]
      const int64_t last = bad.back();
      if (!in_vocab(last)) continue;
      for (int64_t i = 0; i < r; ++i) {
        const std::vector<int64_t>& seq = *sequences[i];
        if (bad.size() > 1) {
          if (bad.size() > seq.size()) continue;
          if (!std::equal(bad.begin(), bad.end() - 1, seq.end() - static_cast<std::ptrdiff_t>(bad.size() - 1))) continue;
        }
        data[i * vocab + last] = kNegInf;
      }
    }
  }
  auto ban_eos = [&](int64_t i) {
    for (int64_t e : o.eos_token_ids) {
      if (in_vocab(e)) data[i * vocab + e] = kNegInf;
    }
  };
  for (int64_t i = 0; i < r; ++i) {
    const int64_t len = static_cast<int64_t>(sequences[i]->size());
    if (o.min_length > 0 && len < o.min_length) ban_eos(i);
    if (o.min_new_tokens && *o.min_new_tokens > 0 && len - 1 < *o.min_new_tokens) ban_eos(i);
    if (o.forced_bos_token_id && len == 1) {
      std::fill(data + i * vocab, data + (i + 1) * vocab, kNegInf);
      data[i * vocab + *o.forced_bos_token_id] = 0.0f;
    }
    if (o.forced_eos_token_id && len == max_length[i] - 1) {
      std::fill(data + i * vocab, data + (i + 1) * vocab, kNegInf);
      data[i * vocab + *o.forced_eos_token_id] = 0.0f;
    }
  }
}

std::vector<std::vector<Hypothesis>> generate(models::EncoderDecoder& model, const std::vector<std::vector<int64_t>>& sources,
                                              const GenerationOptions& options) {
  c10::InferenceMode inference;
  options.validate();
  if (sources.empty()) return {};
  const int64_t vocab = model.target_vocab_size();
  check_token(options.decoder_start_token_id, vocab, "decoder_start_token_id");
  for (int64_t e : options.eos_token_ids) check_token(e, vocab, "eos_token_id");
  if (options.forced_bos_token_id) check_token(*options.forced_bos_token_id, vocab, "forced_bos_token_id");
  if (options.forced_eos_token_id) check_token(*options.forced_eos_token_id, vocab, "forced_eos_token_id");
  Batch batch = make_batch(sources, options.pad_token_id);
  std::vector<int64_t> max_new(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    max_new[i] = options.max_new_tokens_per_source(static_cast<int64_t>(sources[i].size()));
    if (model.max_decoder_positions() > 0) {
      // e.g. Marian's decoder has max_position_embeddings positions; the last new token is never fed back
      max_new[i] = std::min<int64_t>(max_new[i], model.max_decoder_positions());
    }
  }
  models::EncoderOutput enc = model.encode(batch.input_ids, batch.mask);
  if (options.num_beams == 1) return greedy(model, enc, max_new, options, sources);
  return beam_search(model, enc, max_new, options);
}

}  // namespace loom::generate
