#include "loom/pipeline/train_lm_job.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/plot.h"
#include "loom/data/shuffle.h"
#include "loom/models/decoder_lm.h"
#include "loom/text/lm_tokenizer.h"
#include "loom/text/sentencepiece.h"
#include "loom/train/lm_data.h"
#include "loom/train/lm_task.h"
#include "loom/train/trainer.h"

namespace loom::pipeline {
namespace fs = std::filesystem;

namespace {

/// The "data" section.
struct LmDataSection {
  std::string tokenizer = "byte";   // "byte" or "spm"
  int64_t spm_vocab_size = 4000;
  std::string doc_split = "file";
  int64_t window_segments = 8;      // W: segments per training window
  int64_t valid_windows = 16;       // held out of the training windows when no --valid files
  uint64_t seed = 1;
};

/// LM keys of the "train" section (the rest goes to trainer_options_from_json).
struct LmTrainSection {
  int64_t batch_size = 8;  // windows / passkey samples per global batch
  int64_t chunk = 0;       // tokens per forward call (0 = whole window)
};

// Passkey accuracy / extra metrics plot from metrics.jsonl (valid records).
void write_lm_plots(const fs::path& run) {
  auto records = train::read_metrics(run.string());
  core::PlotSeries exact{"passkey exact", {}, {}}, tok{"answer tokens", {}, {}};
  for (auto& r : records) {
    if (!r.contains("passkey_acc") || !r.contains("step")) continue;
    exact.x.push_back(r["step"].get<double>());
    exact.y.push_back(r["passkey_acc"].get<double>());
    tok.x.push_back(r["step"].get<double>());
    tok.y.push_back(r.value("token_acc", 0.0));
  }
  if (exact.x.empty()) return;
  core::LineChart c;
  c.title = "passkey validation accuracy (teacher-forced argmax)";
  c.x_label = "step";
  c.y_label = "accuracy";
  c.series = {exact, tok};
  fs::create_directories(run / "plots");
  core::write_svg((run / "plots" / "passkey.svg").string(), core::line_chart_svg(c));
}

}  // namespace

int train_lm_job(const TrainLmOptions& f) {
  if (auto rc = run_as_local_workers(f.run.nproc)) return *rc;

  // ---- configuration ----
  const std::string& config = f.run.config;
  const nlohmann::json cfg = read_config_object(config);
  nlohmann::json model_json = cfg;
  nlohmann::json data_json = model_json.value("data", nlohmann::json::object());
  nlohmann::json train_json = model_json.value("train", nlohmann::json::object());
  nlohmann::json pk_json = model_json.value("passkey", nlohmann::json::object());
  std::string task = model_json.value("task", std::string("lm"));
  for (const char* k : {"data", "train", "passkey", "task"}) model_json.erase(k);
  if (!f.task.empty()) task = f.task;
  if (task != "lm" && task != "passkey") fail(Where{config, 0, "task"}, "must be \"lm\" or \"passkey\", got \"{}\"", task);
  for (auto* sec : {&data_json, &train_json, &pk_json})
    if (!sec->is_object()) fail(Where{config, 0, ""}, "the data / train / passkey sections must be objects");

  LmDataSection ds;
  ds.tokenizer = take_field<std::string>(data_json, config, "data", "tokenizer", ds.tokenizer);
  ds.spm_vocab_size = take_field<int64_t>(data_json, config, "data", "spm_vocab_size", ds.spm_vocab_size);
  ds.doc_split = take_field<std::string>(data_json, config, "data", "doc_split", ds.doc_split);
  ds.window_segments = take_field<int64_t>(data_json, config, "data", "window_segments", ds.window_segments);
  ds.valid_windows = take_field<int64_t>(data_json, config, "data", "valid_windows", ds.valid_windows);
  ds.seed = take_field<uint64_t>(data_json, config, "data", "seed", ds.seed);
  reject_unknown_fields(data_json, config, "data");
  if (ds.tokenizer != "byte" && ds.tokenizer != "spm")
    fail(Where{config, 0, "data.tokenizer"}, "must be \"byte\" or \"spm\", got \"{}\"", ds.tokenizer);
  if (ds.window_segments < 1) fail(Where{config, 0, "data.window_segments"}, "must be >= 1, got {}", ds.window_segments);
  if (ds.valid_windows < 0) fail(Where{config, 0, "data.valid_windows"}, "must be >= 0, got {}", ds.valid_windows);
  std::string marker;
  const train::DocSplit split = [&] {
    try {
      return train::parse_doc_split(ds.doc_split, &marker);
    } catch (const Error& e) {
      fail(Where{config, 0, "data.doc_split"}, "{}", e.message());
    }
  }();

  LmTrainSection ls;
  ls.batch_size = take_field<int64_t>(train_json, config, "train", "batch_size", ls.batch_size);
  ls.chunk = take_field<int64_t>(train_json, config, "train", "chunk", ls.chunk);
  if (ls.batch_size < 1) fail(Where{config, 0, "train.batch_size"}, "must be >= 1, got {}", ls.batch_size);
  if (ls.chunk < 0) fail(Where{config, 0, "train.chunk"}, "must be >= 0, got {}", ls.chunk);
  train::TrainerOptions topt;
  topt.schedule.lr = 1e-3;
  try {
    topt = train::trainer_options_from_json(train_json, "train", topt);
  } catch (const Error& e) {
    fail(Where{config, 0, e.where().field}, "{}", e.message());
  }
  apply_run_options(f.run, &topt);
  if (task == "passkey") {
    topt.best_metric = "passkey_acc";
    topt.best_higher = true;
  }
  train::validate(topt);
  if (f.run.export_which != "auto" && f.run.export_which != "last" && f.run.export_which != "best")
    fail(Where{"", 0, "--export"}, "must be auto, last or best, got '{}'", f.run.export_which);
  if (task == "lm" && f.data.empty()) fail(Where{"", 0, "--data"}, "the lm task needs --data FILES");

  // ---- process group ----
  auto comm = start_process_group();
  const bool main_rank = comm->rank() == 0;
  const fs::path run(f.run.out);

  // ---- documents and tokenizer ----
  std::vector<train::LmDocument> docs, vdocs;
  int64_t empty = 0;
  if (!f.data.empty()) docs = train::read_lm_documents(f.data, split, marker, &empty);
  if (!f.valid.empty()) vdocs = train::read_lm_documents(f.valid, split, marker);
  if (main_rank) fs::create_directories(run);
  const fs::path spm_path = run / "tokenizer.spm";
  if (ds.tokenizer == "spm" && main_rank && !(f.run.resume && fs::exists(spm_path))) {
    if (docs.empty()) fail(Where{"", 0, "--data"}, "a SentencePiece tokenizer is trained on --data, which is empty");
    const fs::path txt = run / "spm_input.txt";
    {
      std::ofstream o(txt, std::ios::trunc);
      for (auto& d : docs) o << d.text;
    }
    text::SpmTrainOptions so;
    so.input_files = {txt.string()};
    so.vocab_size = static_cast<int>(ds.spm_vocab_size);
    so.character_coverage = 1.0;
    so.byte_fallback = true;
    so.split_digits = true;
    so.input_sentence_size = 200000;
    so.shuffle_input_sentence = true;
    so.seed = static_cast<uint32_t>(ds.seed);
    text::train_sentencepiece(so, spm_path.string());
    fs::remove(txt);
  }
  comm->barrier();
  const text::LmTokenizer tok =
      ds.tokenizer == "spm" ? text::LmTokenizer::sentencepiece(spm_path.string()) : text::LmTokenizer::bytes();

  // ---- model ----
  model_json["vocab_size"] = tok.vocab_size();
  models::DecoderLMConfig mcfg = models::DecoderLMConfig::from_json(model_json, config);
  if (main_rank) {
    nlohmann::json resolved = mcfg.to_json();
    resolved["task"] = task;
    resolved["data"] = cfg.value("data", nlohmann::json::object());
    resolved["train"] = cfg.value("train", nlohmann::json::object());
    resolved["passkey"] = cfg.value("passkey", nlohmann::json::object());
    if (!f.init_from.empty()) resolved["init_from"] = f.init_from;
    core::write_file_atomic((run / "config.json").string(), resolved.dump(2) + "\n");
  }
  models::DecoderLM model(mcfg, topt.seed);
  if (!f.init_from.empty()) {
    const std::string src = models::init_decoder_lm_from(*model, f.init_from);
    if (main_rank && !f.run.quiet)
      std::fprintf(stderr, "loom train lm: weights initialised from %s (fresh optimizer)\n", src.c_str());
  }
  if (main_rank && !f.run.quiet)
    std::fprintf(stderr, "loom train lm: %s task, %lld parameters, tokenizer %s (V = %lld)\n", task.c_str(),
                 static_cast<long long>(model->parameter_count()), tok.type().c_str(),
                 static_cast<long long>(tok.vocab_size()));

  std::unique_ptr<train::TrainTask> the_task;
  if (task == "lm") {
    std::vector<std::vector<int64_t>> ids;
    for (auto& d : docs) ids.push_back(tok.encode(d.text));
    const int64_t window = ds.window_segments * mcfg.segment_len;
    int64_t dropped = 0;
    auto windows = train::make_lm_windows(ids, window, std::max<int64_t>(1, window / 4), &dropped);
    std::vector<train::LmWindow> train_w, valid_w;
    if (!vdocs.empty()) {
      train_w = windows;
      const int64_t off = static_cast<int64_t>(ids.size());
      std::vector<std::vector<int64_t>> vids;
      for (auto& d : vdocs) vids.push_back(tok.encode(d.text));
      for (auto w : train::make_lm_windows(vids, window, 1)) {
        w.doc += off;
        valid_w.push_back(w);
      }
      for (auto& v : vids) ids.push_back(std::move(v));
    } else {
      std::vector<int64_t> perm(windows.size());
      for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
      data::shuffle_indices(perm, ds.seed);
      const size_t nv = std::min(static_cast<size_t>(ds.valid_windows), windows.size() / 2);
      std::vector<char> is_valid(windows.size(), 0);
      for (size_t i = 0; i < nv; ++i) is_valid[static_cast<size_t>(perm[i])] = 1;
      for (size_t i = 0; i < windows.size(); ++i) (is_valid[i] ? valid_w : train_w).push_back(windows[i]);
    }
    if (main_rank && !f.run.quiet)
      std::fprintf(stderr,
                   "loom train lm: %zu documents (%lld empty dropped), windows of %lld tokens (%lld segments of %lld): "
                   "%zu train, %zu valid; %lld tail tokens too short for a window dropped\n",
                   docs.size(), static_cast<long long>(empty), static_cast<long long>(window),
                   static_cast<long long>(ds.window_segments), static_cast<long long>(mcfg.segment_len),
                   train_w.size(), valid_w.size(), static_cast<long long>(dropped));
    train::LmTaskOptions lo;
    lo.batch_windows = ls.batch_size;
    lo.seed = topt.seed;
    lo.chunk = ls.chunk;
    the_task = std::make_unique<train::LmTask>(model, std::move(ids), std::move(train_w), std::move(valid_w), lo);
  } else {
    train::PasskeyTaskOptions po;
    po.batch_size = ls.batch_size;
    po.chunk = ls.chunk;
    po.seed = topt.seed;
    po.min_tokens = take_field<int64_t>(pk_json, config, "passkey", "min_tokens", 256);
    po.max_tokens = take_field<int64_t>(pk_json, config, "passkey", "max_tokens", 1024);
    po.min_depth = take_field<double>(pk_json, config, "passkey", "min_depth", 0.0);
    po.max_depth = take_field<double>(pk_json, config, "passkey", "max_depth", 1.0);
    po.batches_per_epoch = take_field<int64_t>(pk_json, config, "passkey", "batches_per_epoch", 1000);
    po.valid_samples = take_field<int64_t>(pk_json, config, "passkey", "valid_samples", 64);
    po.loss_on_prompt = take_field<bool>(pk_json, config, "passkey", "loss_on_prompt", false);
    nlohmann::json stages = nlohmann::json::array();
    if (auto it = pk_json.find("curriculum"); it != pk_json.end()) {
      stages = *it;
      pk_json.erase(it);
    }
    if (!stages.is_array()) fail(Where{config, 0, "passkey.curriculum"}, "must be an array of stages");
    for (size_t i = 0; i < stages.size(); ++i) {
      const std::string sec = fmt::format("passkey.curriculum[{}]", i);
      if (!stages[i].is_object()) fail(Where{config, 0, sec}, "must be an object {{until_step, min_tokens, max_tokens}}");
      train::PasskeyStage st;
      st.until_step = take_field<int64_t>(stages[i], config, sec, "until_step", 0);
      st.min_tokens = take_field<int64_t>(stages[i], config, sec, "min_tokens", 0);
      st.max_tokens = take_field<int64_t>(stages[i], config, sec, "max_tokens", 0);
      reject_unknown_fields(stages[i], config, sec);
      po.curriculum.push_back(st);
    }
    reject_unknown_fields(pk_json, config, "passkey");
    data::EncodeFn enc = [tok](std::string_view s) { return tok.encode(s); };
    try {
      the_task = std::make_unique<train::PasskeyTask>(model, enc, po);
    } catch (const Error& e) {
      fail(Where{config, 0, e.where().field}, "{}", e.message());  // name the config file too
    }
  }

  train::Trainer trainer(*the_task, topt, *comm);
  trainer.run();

  // ---- export (rank 0) ----
  if (main_rank) {
    std::string which = f.run.export_which;
    if (which == "auto") which = trainer.best_checkpoint().empty() ? "last" : "best";
    const std::string note = load_exported_checkpoint(*model, trainer, topt, which);
    model->save((run / "model").string());
    tok.save((run / "model").string());
    write_lm_plots(run);
    if (!f.run.quiet) std::fprintf(stderr, "loom train lm: wrote %s (%s)\n", (run / "model").string().c_str(), note.c_str());
  }
  comm->barrier();
  return 0;
}

}  // namespace loom::pipeline
