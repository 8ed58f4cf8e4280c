// The `loom` Python module (pybind11): loom.Translator over pipeline::TranslationEngine — the
// object `loom translate` uses — so Python and the CLI translate with the same code and give the
// same text. Translation releases the GIL. loom::Error becomes loom.Error (a RuntimeError) with
// the message the CLI prints after "loom: error: ".
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/io/hub.h"
#include "loom/pipeline/translate_job.h"
#include "loom/pipeline/translation_engine.h"
#include "loom/text/seq2seq_tokenizer.h"

namespace py = pybind11;
using loom::pipeline::EngineOptions;
using loom::pipeline::TranslationEngine;

namespace {

/// Python-side options of one call; unset values keep the Translator's defaults.
struct CallOptions {
  std::optional<std::string> src, tgt;
  std::optional<int64_t> beam_size, n_best, max_new_tokens;
  std::optional<double> length_penalty, repetition_penalty;
  std::optional<int64_t> no_repeat_ngram_size;
  bool sample = false;
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
};

EngineOptions merged(const EngineOptions& base, const CallOptions& c) {
  EngineOptions o = base;
  if (c.src) o.src = *c.src;
  if (c.tgt) o.tgt = *c.tgt;
  if (c.beam_size) o.beam = *c.beam_size;
  if (c.n_best) o.n_best = *c.n_best;
  if (c.max_new_tokens) o.max_new_tokens = *c.max_new_tokens;
  if (c.length_penalty) o.length_penalty = c.length_penalty;
  if (c.repetition_penalty) o.repetition_penalty = c.repetition_penalty;
  if (c.no_repeat_ngram_size) o.no_repeat_ngram_size = c.no_repeat_ngram_size;
  o.sample = c.sample;
  o.temperature = c.temperature;
  o.top_p = c.top_p;
  o.top_k = c.top_k;
  o.seed = c.seed;
  return o;
}

class PyTranslator {
 public:
  PyTranslator(const std::string& model, const std::string& device, int threads, const std::string& src,
               const std::string& tgt, const std::string& compute_type) {
    if (device != "cpu")
      loom::fail(loom::Where{"", 0, "device"}, "'{}' is not available: this build of loom runs on the cpu", device);
    if (threads < 0) loom::fail(loom::Where{"", 0, "threads"}, "must be >= 0, got {}", threads);
    if (threads > 0) torch::set_num_threads(threads);
    base_.src = src;
    base_.tgt = tgt;
    base_.compute_type = compute_type;
    const std::string dir = loom::io::resolve_model(model);
    py::gil_scoped_release release;
    torch::InferenceMode guard;
    engine_ = std::make_unique<TranslationEngine>(dir, base_);
  }

  py::object translate_batch(const std::vector<std::string>& texts, const CallOptions& c, bool return_scores,
                             bool markdown) {
    std::vector<loom::pipeline::SegmentResult> results;
    const EngineOptions o = merged(base_, c);
    {
      py::gil_scoped_release release;
      torch::InferenceMode guard;
      engine_->configure(o);
      results = engine_->translate_texts(texts, markdown);
    }
    py::list out;
    for (const auto& r : results) {
      if (return_scores) {
        py::list hyps;
        for (size_t k = 0; k < r.hypotheses.size(); ++k) {
          py::dict d;
          d["text"] = r.hypotheses[k];
          d["score"] = k < r.scores.size() && !std::isnan(r.scores[k]) ? py::object(py::float_(r.scores[k])) : py::object(py::none());
          hyps.append(d);
        }
        out.append(hyps);
      } else if (o.n_best > 1) {
        out.append(py::cast(r.hypotheses));
      } else {
        out.append(py::str(r.hypotheses.front()));
      }
    }
    return out;
  }

  py::dict translate_file(const std::string& input, const std::string& output, const CallOptions& c,
                          const std::string& format, const std::vector<std::string>& fields, const std::string& suffix,
                          bool resume, bool overwrite, bool markdown, bool with_scores, bool meta) {
    loom::pipeline::TranslateJobOptions job;
    job.input = input;
    job.output = output;
    job.format = loom::pipeline::parse_row_format(format);
    job.fields = fields;
    job.suffix = suffix;
    job.resume = resume;
    job.overwrite = overwrite;
    job.markdown = markdown;
    job.with_scores = with_scores;
    job.meta = meta;
    job.progress = false;
    job.log = nullptr;
    const EngineOptions o = merged(base_, c);
    job.n_best = o.n_best;
    loom::pipeline::TranslateJobStats st;
    {
      py::gil_scoped_release release;
      torch::InferenceMode guard;
      engine_->configure(o);
      job.target_lang = engine_->target_lang();
      job.source_lang = engine_->source_lang();
      job.engine_id = engine_->engine_id();
      st = loom::pipeline::run_translate_job(job, *engine_);
    }
    py::dict d;
    d["rows"] = st.rows;
    d["segments"] = st.segments;
    d["copied_segments"] = st.copied_segments;
    d["rejects"] = st.rejects;
    d["output"] = st.output_path;
    return d;
  }

  std::vector<std::string> tokenize(const std::string& text) const {
    return engine_->tokenizer().source_pieces(text);
  }

 private:
  EngineOptions base_;
  std::unique_ptr<TranslationEngine> engine_;
};

CallOptions call_options(py::object src, py::object tgt, py::object beam_size, py::object n_best,
                         py::object max_new_tokens, py::object length_penalty, py::object repetition_penalty,
                         py::object no_repeat_ngram_size, bool sample, double temperature, int64_t top_k, double top_p,
                         uint64_t seed) {
  CallOptions c;
  if (!src.is_none()) c.src = src.cast<std::string>();
  if (!tgt.is_none()) c.tgt = tgt.cast<std::string>();
  if (!beam_size.is_none()) c.beam_size = beam_size.cast<int64_t>();
  if (!n_best.is_none()) c.n_best = n_best.cast<int64_t>();
  if (!max_new_tokens.is_none()) c.max_new_tokens = max_new_tokens.cast<int64_t>();
  if (!length_penalty.is_none()) c.length_penalty = length_penalty.cast<double>();
  if (!repetition_penalty.is_none()) c.repetition_penalty = repetition_penalty.cast<double>();
  if (!no_repeat_ngram_size.is_none()) c.no_repeat_ngram_size = no_repeat_ngram_size.cast<int64_t>();
  c.sample = sample;
  c.temperature = temperature;
  c.top_k = top_k;
  c.top_p = top_p;
  c.seed = seed;
  return c;
}

}  // namespace

PYBIND11_MODULE(loom, m) {
  m.doc() = "loom: translate text and datasets with HF Marian / NLLB-200 checkpoints or loom models (CPU).";
  static py::exception<loom::Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const loom::Error& e) {
      error(e.what());
    }
  });

  py::class_<PyTranslator>(m, "Translator",
                           "A loaded translation model (HF checkpoint directory, loom model directory or hub id "
                           "in the local HF cache).")
      .def(py::init<const std::string&, const std::string&, int, const std::string&, const std::string&,
                    const std::string&>(),
           py::arg("model"), py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("src") = "",
           py::arg("tgt") = "", py::arg("compute_type") = "float32")
      .def(
          "translate_batch",
          [](PyTranslator& t, const std::vector<std::string>& texts, py::object src, py::object tgt,
             py::object beam_size, py::object n_best, py::object max_new_tokens, bool return_scores,
             py::object length_penalty, py::object repetition_penalty, py::object no_repeat_ngram_size, bool sample,
             double temperature, int64_t top_k, double top_p, uint64_t seed, bool markdown) {
            return t.translate_batch(texts,
                                     call_options(src, tgt, beam_size, n_best, max_new_tokens, length_penalty,
                                                  repetition_penalty, no_repeat_ngram_size, sample, temperature,
                                                  top_k, top_p, seed),
                                     return_scores, markdown);
          },
          py::arg("texts"), py::kw_only(), py::arg("src") = py::none(), py::arg("tgt") = py::none(),
          py::arg("beam_size") = py::none(), py::arg("n_best") = py::none(), py::arg("max_new_tokens") = py::none(),
          py::arg("return_scores") = false, py::arg("length_penalty") = py::none(),
          py::arg("repetition_penalty") = py::none(), py::arg("no_repeat_ngram_size") = py::none(),
          py::arg("sample") = false, py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
          py::arg("seed") = 0, py::arg("markdown") = true,
          "Translates texts as `loom translate` translates TXT lines. Returns a list of str; of lists of "
          "str when n_best > 1; of lists of {'text', 'score'} dicts with return_scores=True.")
      .def(
          "translate_file",
          [](PyTranslator& t, const std::string& input, const std::string& output, py::object src, py::object tgt,
             py::object beam_size, py::object n_best, py::object max_new_tokens, const std::string& format,
             const std::vector<std::string>& fields, const std::string& suffix, bool resume, bool overwrite,
             bool markdown, bool with_scores, bool meta) {
            return t.translate_file(input, output,
                                    call_options(src, tgt, beam_size, n_best, max_new_tokens, py::none(), py::none(),
                                                 py::none(), false, 1.0, 0, 1.0, 0),
                                    format, fields, suffix, resume, overwrite, markdown, with_scores, meta);
          },
          py::arg("input"), py::arg("output"), py::kw_only(), py::arg("src") = py::none(),
          py::arg("tgt") = py::none(), py::arg("beam_size") = py::none(), py::arg("n_best") = py::none(),
          py::arg("max_new_tokens") = py::none(), py::arg("format") = "auto",
          py::arg("fields") = std::vector<std::string>{"prompt", "text"}, py::arg("suffix") = "",
          py::arg("resume") = false, py::arg("overwrite") = false, py::arg("markdown") = true,
          py::arg("with_scores") = false, py::arg("meta") = false,
          "Runs the `loom translate` dataset job (TXT or JSONL, resumable). Returns counters.")
      .def("tokenize", &PyTranslator::tokenize, py::arg("text"),
           "Source pieces of text (the model's source tokenizer, specials excluded).");

  m.def(
      "tokenize",
      [](const std::string& model, const std::string& text, const std::string& src, const std::string& tgt) {
        auto tok = loom::text::load_seq2seq_tokenizer(loom::io::resolve_model(model));
        tok->set_languages(src, tgt);
        return tok->source_pieces(text);
      },
      py::arg("model"), py::arg("text"), py::kw_only(), py::arg("src") = "", py::arg("tgt") = "",
      "Source pieces of text with a model directory's tokenizer (no model weights loaded).");
}
