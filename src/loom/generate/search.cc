#include "loom/generate/search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include "loom/core/error.h"
#include "loom/generate/sampling.h"
#include "loom/models/encoder_decoder.h"
#include "loom/nn/logits_ops.h"

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
// with a small heap per row (nn::row_top_k) instead of a partial sort of a copy. Equal scores
// rank by lower index. scores [N, M] contiguous float32 -> values [N, n] float32, indices [N, n]
// int64.
std::pair<torch::Tensor, torch::Tensor> top_candidates(const torch::Tensor& scores, int64_t n) {
  const int64_t rows = scores.size(0), m = scores.size(1);
  TORCH_CHECK(scores.is_contiguous() && n <= m, "top_candidates: bad input");
  torch::Tensor values = torch::empty({rows, n}, torch::kFloat32);  // [N, n]
  torch::Tensor indices = torch::empty({rows, n}, torch::kInt64);   // [N, n]
  const float* data = scores.data_ptr<float>();
  float* out_v = values.data_ptr<float>();
  int64_t* out_i = indices.data_ptr<int64_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) nn::row_top_k(data + r * m, m, n, out_v + r * n, out_i + r * n);
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

// ---------------------------------------------------------------------------------------------
// StepwiseSearch

struct StepwiseSearch::Sentence {
  int64_t id = 0;
  std::shared_ptr<const GenerationOptions> o;
  int64_t k = 1;        // rows: 1 (greedy, sampling) or num_beams
  int64_t max_new = 0;  // new-token limit
  int64_t max_len = 0;  // decoder length limit, 1 + max_new
  int64_t cur_len = 1;  // decoder length of every open row
  std::vector<std::vector<int64_t>> seqs;  // per row: decoder sequence incl. the start token
  std::vector<int64_t> next;               // per row: the token the next step feeds
  // greedy / sampling
  double sum_logprobs = 0.0;
  bool ended_eos = false;
  std::unique_ptr<std::mt19937_64> rng;
  // beam search
  std::vector<float> beam_scores;  // per row
  std::unique_ptr<BeamHypotheses> hyps;

  bool beam() const { return o->num_beams > 1; }

  std::vector<Hypothesis> greedy_result() const {
    const std::vector<int64_t>& seq = seqs.front();
    const int64_t generated = static_cast<int64_t>(seq.size()) - 1 + (ended_eos ? 1 : 0);
    const double score = sum_logprobs / std::pow(static_cast<double>(std::max<int64_t>(generated, 1)), o->length_penalty);
    return {make_hypothesis(seq, ended_eos, o->eos_token_ids.front(), static_cast<float>(score), max_new,
                            o->forced_eos_token_id.has_value())};
  }

  std::vector<Hypothesis> beam_result() const {
    std::vector<Hypothesis> out;
    std::vector<const BeamHypotheses::Beam*> sorted;
    for (const auto& b : hyps->beams()) sorted.push_back(&b);
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto* x, const auto* y) { return x->score < y->score; });
    for (int64_t j = 0; j < o->num_return_sequences && !sorted.empty(); ++j) {
      const auto* b = sorted.back();
      sorted.pop_back();
      out.push_back(make_hypothesis(b->tokens, b->eos, o->eos_token_ids.front(), static_cast<float>(b->score), max_new,
                                    o->forced_eos_token_id.has_value()));
    }
    return out;
  }
};

namespace {

// What one step decided for a sentence: finished (with its hypotheses), or its next rows.
struct Advance {
  bool finished = false;
  std::vector<int64_t> source_rows;  // batch rows (before the step) the sentence's new rows continue
};

// Greedy search / sampling over the rows of `group` (one row each); scores [N, V] are their
// logits (contiguous float32, modified).
void greedy_step(std::vector<StepwiseSearch::Sentence*>& group, const std::vector<int64_t>& first_row,
                 torch::Tensor scores, std::vector<Advance>& out) {
  const GenerationOptions& o = *group.front()->o;
  const int64_t r = static_cast<int64_t>(group.size());
  std::vector<const std::vector<int64_t>*> rows(r);
  std::vector<int64_t> row_max(r);
  for (int64_t i = 0; i < r; ++i) {
    rows[i] = &group[i]->seqs.front();
    row_max[i] = group[i]->max_len;
  }
  apply_logits_processors(scores, rows, row_max, o);
  // renormalize_logits (log_softmax) changes neither the argmax nor the chosen token's
  // log-probability computed below, so greedy search skips it. The argmax (first index among
  // equal maxima, as torch.argmax) and the log-softmax normaliser of each row come from reading
  // the row; the chosen token's log-probability is (x - max) - log Σ exp(x - max).
  const int64_t vocab = scores.size(1);
  const float* data = scores.data_ptr<float>();
  std::vector<int64_t> next(static_cast<size_t>(r));
  std::vector<float> best(static_cast<size_t>(r)), logsum(static_cast<size_t>(r));
  at::parallel_for(0, r, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = data + i * vocab;
      nn::row_top_k(row, vocab, 1, &best[static_cast<size_t>(i)], &next[static_cast<size_t>(i)]);
      logsum[static_cast<size_t>(i)] = nn::row_logsum_exp(row, vocab, best[static_cast<size_t>(i)]);
    }
  });
  for (int64_t i = 0; i < r; ++i) {
    StepwiseSearch::Sentence& s = *group[i];
    Advance& adv = out[i];
    if (o.do_sample) next[static_cast<size_t>(i)] = draw_token(scores[i], o, *s.rng);
    const int64_t tok = next[static_cast<size_t>(i)];
    const float chosen = (data[i * vocab + tok] - best[static_cast<size_t>(i)]) - logsum[static_cast<size_t>(i)];  // log-prob
    s.sum_logprobs += static_cast<double>(chosen);
    if (is_eos(tok, o.eos_token_ids)) {
      s.ended_eos = true;
      adv.finished = true;
      continue;
    }
    s.seqs.front().push_back(tok);
    ++s.cur_len;
    if (static_cast<int64_t>(s.seqs.front().size()) >= s.max_len) {
      adv.finished = true;
      continue;
    }
    s.next.front() = tok;
    adv.source_rows = {first_row[i]};
  }
}

// The n_keep best (log-probability + beam score) candidates of each sentence, as top_candidates
// on the [N, K·V] view of log_softmax(logits) after the logits processors (and log_softmax again
// when renormalize_logits) plus the beam scores — for processors that only mask tokens (-inf)
// or force one (its log-probability becomes 0), i.e. no repetition penalty. Nothing of size
// [R, V] is written: the masks go into the logits in place, each row's log-softmax normaliser
// (max, log Σ exp(x - max)) and its n_keep best logits are read off the row, and only those
// candidates are scored. A sentence's best n_keep over its K rows are among its rows' best
// n_keep each. logits [R = N·K, V] float32 (modified) -> values [N, n_keep], flat indices
// row·V + token [N, n_keep] (row within the sentence), best first, ties by lower index.
std::pair<torch::Tensor, torch::Tensor> beam_candidates(const torch::Tensor& logits,
                                                        const std::vector<const std::vector<int64_t>*>& rows,
                                                        const std::vector<int64_t>& row_max,
                                                        const std::vector<float>& beam_scores, int64_t n, int64_t k,
                                                        int64_t n_keep, const GenerationOptions& o) {
  const int64_t r = n * k, vocab = logits.size(1);
  torch::Tensor scores = logits.is_contiguous() ? logits : logits.contiguous();  // [R, V]
  float* data = scores.data_ptr<float>();
  std::vector<float> shift(static_cast<size_t>(r)), logsum(static_cast<size_t>(r));  // per row
  if (!o.renormalize_logits) {
    // Log-probabilities of the unprocessed logits: normaliser before the masks go in.
    at::parallel_for(0, r, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        shift[i] = nn::row_max(data + i * vocab, vocab);
        logsum[i] = nn::row_logsum_exp(data + i * vocab, vocab, shift[i]);
      }
    });
  }
  apply_logits_processors(scores, rows, row_max, o);
  TORCH_CHECK(n_keep <= k * vocab, "beam search: ", n_keep, " candidates from ", k, " rows of ", vocab, " tokens");
  const int64_t per_row = std::min(n_keep, vocab);  // a row holds at most V candidates
  std::vector<float> cand_v(static_cast<size_t>(r * per_row));
  std::vector<int64_t> cand_i(static_cast<size_t>(r * per_row));
  at::parallel_for(0, r, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = data + i * vocab;
      nn::row_top_k(row, vocab, per_row, cand_v.data() + i * per_row, cand_i.data() + i * per_row);
      const int64_t len = static_cast<int64_t>(rows[i]->size());
      const bool forced = (o.forced_bos_token_id && len == 1) || (o.forced_eos_token_id && len == row_max[i] - 1);
      if (o.renormalize_logits) {
        shift[i] = cand_v[i * per_row];  // the row's max after the masks
        logsum[i] = nn::row_logsum_exp(row, vocab, shift[i]);
      } else if (forced) {
        shift[i] = logsum[i] = 0.0f;  // the forced token's log-probability is set to 0
      }
    }
  });
  torch::Tensor values = torch::empty({n, n_keep}, torch::kFloat32);  // [N, n_keep]
  torch::Tensor indices = torch::empty({n, n_keep}, torch::kInt64);   // [N, n_keep]
  auto vw = values.accessor<float, 2>();
  auto iw = indices.accessor<int64_t, 2>();
  using Item = std::pair<float, int64_t>;
  auto better = [](const Item& a, const Item& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::vector<Item> items;
  for (int64_t a = 0; a < n; ++a) {
    items.clear();
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = a * k + j;
      for (int64_t c = 0; c < per_row; ++c) {
        const float x = cand_v[i * per_row + c];
        items.emplace_back(((x - shift[i]) - logsum[i]) + beam_scores[i], j * vocab + cand_i[i * per_row + c]);
      }
    }
    std::partial_sort(items.begin(), items.begin() + n_keep, items.end(), better);
    for (int64_t c = 0; c < n_keep; ++c) {
      vw[a][c] = items[c].first;
      iw[a][c] = items[c].second;
    }
  }
  return {values, indices};
}

// Beam search over the rows of `group` (num_beams rows each); logits [N·K, V] (float32).
void beam_step(std::vector<StepwiseSearch::Sentence*>& group, const std::vector<int64_t>& first_row,
               const torch::Tensor& logits, std::vector<Advance>& out) {
  const GenerationOptions& o = *group.front()->o;
  const int64_t n = static_cast<int64_t>(group.size());
  const int64_t k = o.num_beams;
  const int64_t r = n * k;
  const int64_t n_keep = std::max<int64_t>(2, 1 + static_cast<int64_t>(o.eos_token_ids.size())) * k;
  const int64_t vocab = logits.size(1);
  std::vector<const std::vector<int64_t>*> rows(r);
  std::vector<int64_t> row_max(r);
  std::vector<float> beam_scores(r);
  for (int64_t i = 0; i < r; ++i) {
    rows[i] = &group[i / k]->seqs[i % k];
    row_max[i] = group[i / k]->max_len;
    beam_scores[i] = group[i / k]->beam_scores[i % k];
  }
  torch::Tensor top_scores, top_ids;  // [N, n_keep] each
  if (o.repetition_penalty != 1.0) {
    // The penalty depends on the log-probability values: the log-softmax is materialised.
    torch::Tensor scores = torch::log_softmax(logits, -1);  // [R, V]
    apply_logits_processors(scores, rows, row_max, o);
    if (o.renormalize_logits) scores = torch::log_softmax(scores, -1);  // [R, V]
    scores.add_(torch::tensor(beam_scores, torch::kFloat32).unsqueeze(1));  // [R, V]
    std::tie(top_scores, top_ids) = top_candidates(scores.view({n, k * vocab}), n_keep);
  } else {
    std::tie(top_scores, top_ids) = beam_candidates(logits, rows, row_max, beam_scores, n, k, n_keep, o);
  }
  auto ts = top_scores.accessor<float, 2>();
  auto ti = top_ids.accessor<int64_t, 2>();
  for (int64_t a = 0; a < n; ++a) {
    StepwiseSearch::Sentence& s = *group[a];
    BeamHypotheses& h = *s.hyps;
    std::vector<int64_t> rows_a, toks_a;  // rows_a: the sentence's own rows 0..K-1
    std::vector<float> scores_a;
    for (int64_t rank = 0; rank < n_keep; ++rank) {
      const int64_t tok = ti[a][rank] % vocab;
      const int64_t row = ti[a][rank] / vocab;
      const float sc = ts[a][rank];
      if (is_eos(tok, o.eos_token_ids)) {
        if (rank >= k) continue;
        h.add(s.seqs[row], static_cast<double>(sc), s.cur_len, true);
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
    bool done = h.is_done(static_cast<double>(ts[a][0]), s.cur_len + 1);
    if (!done && s.cur_len + 1 >= s.max_len) {  // length limit: the open beams become hypotheses
      for (int64_t j = 0; j < k; ++j) {
        std::vector<int64_t> seq = s.seqs[rows_a[j]];
        seq.push_back(toks_a[j]);
        h.add(seq, static_cast<double>(scores_a[j]), s.cur_len, false);
      }
      done = true;
    }
    ++s.cur_len;
    Advance& adv = out[a];
    if (done) {
      adv.finished = true;
      continue;
    }
    std::vector<std::vector<int64_t>> new_seqs;
    new_seqs.reserve(k);
    for (int64_t j = 0; j < k; ++j) {
      std::vector<int64_t> seq = s.seqs[rows_a[j]];
      seq.push_back(toks_a[j]);
      new_seqs.push_back(std::move(seq));
      adv.source_rows.push_back(first_row[a] + rows_a[j]);
    }
    s.seqs = std::move(new_seqs);
    s.beam_scores = std::move(scores_a);
    s.next = std::move(toks_a);
  }
}

}  // namespace

StepwiseSearch::StepwiseSearch(models::EncoderDecoder& model)
    : model_(model), state_(std::make_unique<models::DecoderState>()) {}

StepwiseSearch::~StepwiseSearch() = default;

int64_t StepwiseSearch::rows() const {
  int64_t r = 0;
  for (const auto& s : sentences_) r += s->k;
  return r;
}

std::vector<int64_t> StepwiseSearch::add(const std::vector<std::vector<int64_t>>& sources,
                                         std::shared_ptr<const GenerationOptions> options) {
  c10::InferenceMode inference;
  if (!options) fail("StepwiseSearch::add: no generation options");
  const GenerationOptions& o = *options;
  o.validate();
  if (sources.empty()) return {};
  const int64_t vocab = model_.target_vocab_size();
  check_token(o.decoder_start_token_id, vocab, "decoder_start_token_id");
  for (int64_t e : o.eos_token_ids) check_token(e, vocab, "eos_token_id");
  if (o.forced_bos_token_id) check_token(*o.forced_bos_token_id, vocab, "forced_bos_token_id");
  if (o.forced_eos_token_id) check_token(*o.forced_eos_token_id, vocab, "forced_eos_token_id");
  Batch batch = make_batch(sources, o.pad_token_id);
  const int64_t k = o.num_beams;
  std::vector<std::unique_ptr<Sentence>> added;
  int64_t longest = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    auto s = std::make_unique<Sentence>();
    s->o = options;
    s->k = k;
    s->max_new = o.max_new_tokens_per_source(static_cast<int64_t>(sources[i].size()));
    if (model_.max_decoder_positions() > 0) {
      // e.g. Marian's decoder has max_position_embeddings positions; the last new token is never fed back
      s->max_new = std::min<int64_t>(s->max_new, model_.max_decoder_positions());
    }
    s->max_len = 1 + s->max_new;
    longest = std::max(longest, s->max_len);
    s->seqs.assign(static_cast<size_t>(k), std::vector<int64_t>{o.decoder_start_token_id});
    s->next.assign(static_cast<size_t>(k), o.decoder_start_token_id);
    if (k > 1) {
      s->beam_scores.assign(static_cast<size_t>(k), -1e9f);  // only beam 0 is live at step 0
      s->beam_scores[0] = 0.0f;
      s->hyps = std::make_unique<BeamHypotheses>(k, o.length_penalty, o.early_stopping, s->max_len);
    } else if (o.do_sample) {
      s->rng = std::make_unique<std::mt19937_64>(sentence_seed(o.seed, sources[i]));
    }
    added.push_back(std::move(s));
  }
  models::EncoderOutput enc = model_.encode(batch.input_ids, batch.mask);
  models::DecoderState fresh;
  fresh.reserve(longest);
  model_.init_state(fresh, enc, k);
  state_->append(std::move(fresh));
  std::vector<int64_t> ids;
  for (auto& s : added) {
    s->id = next_id_++;
    ids.push_back(s->id);
    sentences_.push_back(std::move(s));
  }
  return ids;
}

void StepwiseSearch::drop_rows(const std::vector<int64_t>& keep_rows, bool same_sentences) {
  if (keep_rows.empty()) {
    state_ = std::make_unique<models::DecoderState>();  // the batch is empty: the next add starts afresh
    return;
  }
  bool identity = same_sentences && static_cast<int64_t>(keep_rows.size()) == state_->rows();
  for (size_t i = 0; identity && i < keep_rows.size(); ++i) identity = keep_rows[i] == static_cast<int64_t>(i);
  if (identity) return;
  torch::Tensor index = torch::tensor(keep_rows, torch::kInt64);  // [R']
  // Rows stay with their sentence (beams reordered): the cross-attention memory stays valid.
  if (same_sentences) state_->reorder_self(index);
  else state_->reorder(index);
}

bool StepwiseSearch::cancel(int64_t id) {
  c10::InferenceMode inference;
  auto it = std::find_if(sentences_.begin(), sentences_.end(), [id](const auto& s) { return s->id == id; });
  if (it == sentences_.end()) return false;
  std::vector<int64_t> keep;
  int64_t row = 0;
  for (const auto& s : sentences_) {
    if (s->id != id) {
      for (int64_t j = 0; j < s->k; ++j) keep.push_back(row + j);
    }
    row += s->k;
  }
  sentences_.erase(it);
  drop_rows(keep, false);
  return true;
}

std::vector<FinishedSentence> StepwiseSearch::step() {
  c10::InferenceMode inference;
  if (sentences_.empty()) return {};
  const int64_t r = rows();
  std::vector<int64_t> tokens;
  tokens.reserve(static_cast<size_t>(r));
  for (const auto& s : sentences_) tokens.insert(tokens.end(), s->next.begin(), s->next.end());
  torch::Tensor input = torch::tensor(tokens, torch::kInt64).unsqueeze(1);  // [R, 1]
  state_->set_reuse_logits(true);  // this step's logits are consumed before the next decode
  torch::Tensor logits = model_.decode(input, models::EncoderOutput{}, state_.get()).select(1, 0);  // [R, V]
  ++steps_;

  // Sentences that share an options object are advanced together (one class of tensor calls).
  std::vector<const GenerationOptions*> classes;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < sentences_.size(); ++i) {
    const GenerationOptions* o = sentences_[i]->o.get();
    auto it = std::find(classes.begin(), classes.end(), o);
    if (it == classes.end()) {
      classes.push_back(o);
      members.emplace_back();
      it = classes.end() - 1;
    }
    members[static_cast<size_t>(it - classes.begin())].push_back(i);
  }
  std::vector<int64_t> first_row(sentences_.size());
  for (size_t i = 0, row = 0; i < sentences_.size(); ++i) {
    first_row[i] = static_cast<int64_t>(row);
    row += static_cast<size_t>(sentences_[i]->k);
  }
  std::vector<Advance> advances(sentences_.size());
  for (const std::vector<size_t>& m : members) {
    std::vector<Sentence*> group;
    std::vector<int64_t> group_first;
    std::vector<int64_t> group_rows;
    for (size_t i : m) {
      group.push_back(sentences_[i].get());
      group_first.push_back(first_row[i]);
      for (int64_t j = 0; j < sentences_[i]->k; ++j) group_rows.push_back(first_row[i] + j);
    }
    torch::Tensor scores = static_cast<int64_t>(group_rows.size()) == r
                               ? logits
                               : logits.index_select(0, torch::tensor(group_rows, torch::kInt64));  // [R_c, V]
    std::vector<Advance> out(group.size());
    if (group.front()->beam()) {
      beam_step(group, group_first, scores, out);
    } else {
      if (!scores.is_contiguous()) scores = scores.contiguous();
      greedy_step(group, group_first, scores, out);
    }
    for (size_t j = 0; j < m.size(); ++j) advances[m[j]] = std::move(out[j]);
  }

  std::vector<FinishedSentence> finished;
  std::vector<std::unique_ptr<Sentence>> kept;
  std::vector<int64_t> keep_rows;
  for (size_t i = 0; i < sentences_.size(); ++i) {
    Sentence& s = *sentences_[i];
    if (advances[i].finished) {
      finished.push_back(FinishedSentence{s.id, s.beam() ? s.beam_result() : s.greedy_result()});
      continue;
    }
    keep_rows.insert(keep_rows.end(), advances[i].source_rows.begin(), advances[i].source_rows.end());
    kept.push_back(std::move(sentences_[i]));
  }
  const bool same = finished.empty();
  sentences_ = std::move(kept);
  drop_rows(keep_rows, same);
  return finished;
}

std::vector<std::vector<Hypothesis>> generate(models::EncoderDecoder& model, const std::vector<std::vector<int64_t>>& sources,
                                              const GenerationOptions& options) {
  c10::InferenceMode inference;
  options.validate();
  if (sources.empty()) return {};
  StepwiseSearch search(model);
  const std::vector<int64_t> ids = search.add(sources, std::make_shared<const GenerationOptions>(options));
  std::vector<std::vector<Hypothesis>> out(sources.size());
  while (!search.empty()) {
    for (FinishedSentence& f : search.step()) out[static_cast<size_t>(f.id - ids.front())] = std::move(f.hypotheses);
  }
  return out;
}

}  // namespace loom::generate
