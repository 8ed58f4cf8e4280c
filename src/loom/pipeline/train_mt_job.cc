#include "loom/pipeline/train_mt_job.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/data/parallel_corpus.h"
#include "loom/eval/bleu.h"
#include "loom/eval/chrf.h"
#include "loom/eval/mt_tokenize.h"
#include "loom/generate/options.h"
#include "loom/generate/translator.h"
#include "loom/models/native_seq2seq.h"
#include "loom/text/loom_spm_tokenizer.h"
#include "loom/text/sentencepiece.h"
#include "loom/train/mt_task.h"
#include "loom/train/trainer.h"

namespace loom::pipeline {
namespace fs = std::filesystem;

namespace {

/// The "data" section of the config: how the corpus is cleaned, split and tokenized.
struct DataSection {
  int64_t valid = 500, test = 500;  // pairs held out
  uint64_t seed = 1;                // split seed
  int64_t max_chars = 1000;         // cleaning: longest side in code points
  double max_ratio = 0.0;           // cleaning: code-point length ratio (0 = off; CJK vs Latin differ)
  int64_t spm_vocab_size = 8000;
  bool joint_vocab = true;
  std::string spm_model_type = "unigram";
  double character_coverage = 0.9995;
  std::string bleu_tokenize = "13a";  // sacreBLEU tokenizer of the validation BLEU (default "zh" when target_lang is zh*/cmn*)
  std::string source_lang, target_lang;
};

/// MT-specific keys of the "train" section (the rest goes to trainer_options_from_json).
struct MtTrainSection {
  int64_t max_tokens = 4096;
  double label_smoothing = 0.1;
  int64_t beam = 1;             // validation decoding: 1 = greedy
  int64_t bleu_sentences = 200;
  int64_t average_last = 0;
};

DataSection parse_data_section(const nlohmann::json& cfg, const std::string& file) {
  DataSection d;
  if (!cfg.contains("data")) return d;
  nlohmann::json j = cfg["data"];
  const std::string w = "data";
  if (!j.is_object()) fail(Where{file, 0, "data"}, "must be an object");
  const bool tokenize_given = j.contains("bleu_tokenize");
  d.valid = take_field<int64_t>(j, file, w, "valid", d.valid);
  d.test = take_field<int64_t>(j, file, w, "test", d.test);
  d.seed = take_field<uint64_t>(j, file, w, "seed", d.seed);
  d.max_chars = take_field<int64_t>(j, file, w, "max_chars", d.max_chars);
  d.max_ratio = take_field<double>(j, file, w, "max_ratio", d.max_ratio);
  d.spm_vocab_size = take_field<int64_t>(j, file, w, "spm_vocab_size", d.spm_vocab_size);
  d.joint_vocab = take_field<bool>(j, file, w, "joint_vocab", d.joint_vocab);
  d.spm_model_type = take_field<std::string>(j, file, w, "spm_model_type", d.spm_model_type);
  d.character_coverage = take_field<double>(j, file, w, "character_coverage", d.character_coverage);
  d.bleu_tokenize = take_field<std::string>(j, file, w, "bleu_tokenize", d.bleu_tokenize);
  d.source_lang = take_field<std::string>(j, file, w, "source_lang", d.source_lang);
  d.target_lang = take_field<std::string>(j, file, w, "target_lang", d.target_lang);
  reject_unknown_fields(j, file, w);
  // sacreBLEU's convention: Chinese targets are scored with the zh tokenizer (13a would treat
  // a whole unsegmented sentence as one word) unless the config says otherwise.
  if (!tokenize_given && (d.target_lang.rfind("zh", 0) == 0 || d.target_lang.rfind("cmn", 0) == 0))
    d.bleu_tokenize = "zh";
  auto need = [&](bool ok, const char* f, const std::string& m) {
    if (!ok) fail(Where{file, 0, std::string("data.") + f}, "{}", m);
  };
  need(d.valid >= 1, "valid", fmt::format("must be >= 1, got {}", d.valid));
  need(d.test >= 0, "test", fmt::format("must be >= 0, got {}", d.test));
  need(d.max_chars >= 1, "max_chars", fmt::format("must be >= 1, got {}", d.max_chars));
  need(d.max_ratio >= 0, "max_ratio", fmt::format("must be >= 0, got {}", d.max_ratio));
  need(d.spm_vocab_size >= 8, "spm_vocab_size", fmt::format("must be >= 8, got {}", d.spm_vocab_size));
  need(d.spm_model_type == "unigram" || d.spm_model_type == "bpe", "spm_model_type",
       fmt::format("must be \"unigram\" or \"bpe\", got \"{}\"", d.spm_model_type));
  need(d.character_coverage > 0 && d.character_coverage <= 1, "character_coverage",
       fmt::format("must be in (0, 1], got {}", d.character_coverage));
  try {
    eval::parse_bleu_tokenizer(d.bleu_tokenize);
  } catch (const Error& e) {
    fail(Where{file, 0, "data.bleu_tokenize"}, "{}", e.message());
  }
  return d;
}

MtTrainSection take_mt_train_keys(nlohmann::json& train, const std::string& file) {
  MtTrainSection s;
  const std::string w = "train";
  s.max_tokens = take_field<int64_t>(train, file, w, "max_tokens", s.max_tokens);
  s.label_smoothing = take_field<double>(train, file, w, "label_smoothing", s.label_smoothing);
  s.beam = take_field<int64_t>(train, file, w, "beam", s.beam);
  s.bleu_sentences = take_field<int64_t>(train, file, w, "bleu_sentences", s.bleu_sentences);
  s.average_last = take_field<int64_t>(train, file, w, "average_last", s.average_last);
  auto need = [&](bool ok, const char* f, const std::string& m) {
    if (!ok) fail(Where{file, 0, std::string("train.") + f}, "{}", m);
  };
  need(s.max_tokens >= 8, "max_tokens", fmt::format("must be >= 8, got {}", s.max_tokens));
  need(s.label_smoothing >= 0 && s.label_smoothing < 1, "label_smoothing",
       fmt::format("must be in [0, 1), got {}", s.label_smoothing));
  need(s.beam >= 1, "beam", fmt::format("must be >= 1, got {}", s.beam));
  need(s.bleu_sentences >= 0, "bleu_sentences", fmt::format("must be >= 0, got {}", s.bleu_sentences));
  need(s.average_last >= 0, "average_last", fmt::format("must be >= 0, got {}", s.average_last));
  return s;
}

void write_lines(const fs::path& path, const std::vector<data::SentencePair>& pairs, bool source) {
  std::string text;
  for (auto& p : pairs) text += (source ? p.src : p.tgt) + "\n";
  core::write_file_atomic(path.string(), text);
}

// Rank 0: read, clean, split, write RUN/data/*, train SentencePiece into RUN/spm.
void prepare_data(const TrainMtOptions& f, const DataSection& ds, const fs::path& run, bool log) {
  std::vector<data::SentencePair> pairs;
  if (!f.data.empty())
    pairs = data::read_parallel_tsv(f.data);
  else
    pairs = data::read_parallel_files(f.src_file, f.tgt_file);
  data::CleanOptions co;
  co.max_len = ds.max_chars;
  co.max_ratio = ds.max_ratio;
  data::CleanReport report;
  auto clean = data::clean_pairs(pairs, co, &report);
  data::SplitOptions so;
  so.valid = ds.valid;
  so.test = ds.test;
  so.seed = ds.seed;
  auto split = data::split_pairs(clean, so);
  fs::path dd = run / "data";
  fs::create_directories(dd);
  data::write_parallel_tsv((dd / "train.tsv").string(), split.train);
  data::write_parallel_tsv((dd / "valid.tsv").string(), split.valid);
  data::write_parallel_tsv((dd / "test.tsv").string(), split.test);
  nlohmann::json rep = {{"input", report.input}, {"kept", report.kept},
                        {"invalid_utf8", report.invalid_utf8}, {"empty", report.empty},
                        {"too_long", report.too_long}, {"bad_ratio", report.bad_ratio},
                        {"duplicate", report.duplicate}, {"examples", report.examples},
                        {"train", split.train.size()}, {"valid", split.valid.size()},
                        {"test", split.test.size()}, {"removed_overlap", split.removed_overlap}};
  core::write_file_atomic((dd / "report.json").string(), rep.dump(2) + "\n");
  if (log) {
    std::fprintf(stderr, "loom train: %s\n", report.summary().c_str());
    for (auto& e : report.examples) std::fprintf(stderr, "loom train:   dropped %s\n", e.c_str());
    std::fprintf(stderr, "loom train: split %zu train / %zu valid / %zu test (%lld train pairs removed: source in valid/test)\n",
                 split.train.size(), split.valid.size(), split.test.size(),
                 static_cast<long long>(split.removed_overlap));
  }
  fs::path sd = run / "spm";
  fs::create_directories(sd);
  if (!f.spm_src.empty()) {
    fs::copy_file(f.spm_src, sd / "source.spm", fs::copy_options::overwrite_existing);
    fs::copy_file(f.spm_tgt.empty() ? f.spm_src : f.spm_tgt, sd / "target.spm", fs::copy_options::overwrite_existing);
    return;
  }
  write_lines(dd / "train.src.txt", split.train, true);
  write_lines(dd / "train.tgt.txt", split.train, false);
  text::SpmTrainOptions to;
  to.model_type = ds.spm_model_type;
  to.vocab_size = static_cast<int>(ds.spm_vocab_size);
  to.character_coverage = ds.character_coverage;
  to.seed = static_cast<uint32_t>(ds.seed);
  if (ds.joint_vocab) {
    to.input_files = {(dd / "train.src.txt").string(), (dd / "train.tgt.txt").string()};
    text::train_sentencepiece(to, (sd / "source.spm").string());
    fs::copy_file(sd / "source.spm", sd / "target.spm", fs::copy_options::overwrite_existing);
  } else {
    to.input_files = {(dd / "train.src.txt").string()};
    text::train_sentencepiece(to, (sd / "source.spm").string());
    to.input_files = {(dd / "train.tgt.txt").string()};
    text::train_sentencepiece(to, (sd / "target.spm").string());
  }
  fs::remove(dd / "train.src.txt");
  fs::remove(dd / "train.tgt.txt");
}

std::vector<train::EncodedPair> encode_pairs(const std::vector<data::SentencePair>& pairs,
                                             const text::LoomSpmTokenizer& tok, int64_t max_src,
                                             int64_t max_tgt, int64_t* dropped) {
  std::vector<train::EncodedPair> out;
  for (auto& p : pairs) {
    train::EncodedPair e{tok.encode_source(p.src), tok.encode_target(p.tgt)};
    if (static_cast<int64_t>(e.src.size()) > max_src || static_cast<int64_t>(e.tgt.size()) > max_tgt) {
      ++*dropped;
      continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

int train_mt_job(const TrainMtOptions& f) {
  if (auto rc = run_as_local_workers(f.run.nproc)) return *rc;
  if (f.data.empty() == (f.src_file.empty() || f.tgt_file.empty()))
    fail(Where{"", 0, "--data"}, "give either --data FILE.tsv or both --src-file and --tgt-file");
  if (!f.src_file.empty() != !f.tgt_file.empty())
    fail(Where{"", 0, "--tgt-file"}, "--src-file and --tgt-file go together");
  if (!f.spm_tgt.empty() && f.spm_src.empty()) fail(Where{"", 0, "--tgt-spm"}, "needs --src-spm");

  // ---- configuration: model keys at the top level, "train" and "data" sections ----
  const std::string& config = f.run.config;
  const nlohmann::json cfg = read_config_object(config);
  nlohmann::json train_json = cfg.value("train", nlohmann::json::object());
  if (!train_json.is_object()) fail(Where{config, 0, "train"}, "must be an object");
  DataSection ds = parse_data_section(cfg, config);
  if (f.valid_size) ds.valid = *f.valid_size;
  if (f.test_size) ds.test = *f.test_size;
  if (f.spm_vocab_size) ds.spm_vocab_size = *f.spm_vocab_size;
  MtTrainSection mts = take_mt_train_keys(train_json, config);
  if (f.max_tokens) mts.max_tokens = *f.max_tokens;
  if (f.beam) mts.beam = *f.beam;
  if (f.bleu_sentences) mts.bleu_sentences = *f.bleu_sentences;
  if (f.average_last > 0) mts.average_last = f.average_last;
  train::TrainerOptions topt;
  topt.best_metric = "bleu";
  topt.best_higher = true;
  topt.valid_every = 1000;
  topt.save_every = 1000;
  try {
    topt = train::trainer_options_from_json(train_json, "train", topt);
  } catch (const Error& e) {
    fail(Where{config, 0, e.where().field}, "{}", e.message());
  }
  apply_run_options(f.run, &topt);
  if (mts.bleu_sentences == 0) {
    topt.best_metric = "valid_loss";
    topt.best_higher = false;
  }
  topt.keep_last = std::max(topt.keep_last, mts.average_last);
  train::validate(topt);
  const std::string& export_which = f.run.export_which;
  if (export_which != "auto" && export_which != "last" && export_which != "best" && export_which != "average")
    fail(Where{"", 0, "--export"}, "must be auto, last, best or average, got '{}'", export_which);

  // ---- process group ----
  auto comm = start_process_group();
  const bool main_rank = comm->rank() == 0;
  const fs::path run(f.run.out);

  // ---- data (rank 0 prepares; a resumed run reuses what it wrote) ----
  const bool have_data = fs::exists(run / "data" / "train.tsv") && fs::exists(run / "spm" / "target.spm");
  if (main_rank) {
    fs::create_directories(run);
    if (!(f.run.resume && have_data)) prepare_data(f, ds, run, !f.run.quiet);
  }
  comm->barrier();
  auto train_pairs = data::read_parallel_tsv((run / "data" / "train.tsv").string());
  auto valid_pairs = data::read_parallel_tsv((run / "data" / "valid.tsv").string());

  // ---- model config: vocabulary from the SentencePiece models ----
  text::SentencePiece src_spm((run / "spm" / "source.spm").string());
  text::SentencePiece tgt_spm((run / "spm" / "target.spm").string());
  nlohmann::json model_json = cfg;
  model_json.erase("train");
  model_json.erase("data");
  model_json["model_type"] = models::NativeSeq2SeqConfig::kModelType;
  const bool joint = core::read_file((run / "spm" / "source.spm").string()) ==
                     core::read_file((run / "spm" / "target.spm").string());
  model_json["shared_vocab"] = joint;
  model_json["vocab_size"] = src_spm.size();
  model_json["target_vocab_size"] = tgt_spm.size();
  if (!joint) model_json["tie_word_embeddings"] = model_json.value("tie_word_embeddings", true);
  if (!ds.source_lang.empty()) model_json["source_lang"] = ds.source_lang;
  if (!ds.target_lang.empty()) model_json["target_lang"] = ds.target_lang;
  models::NativeSeq2SeqConfig mcfg = models::NativeSeq2SeqConfig::from_json(model_json, config);
  if (main_rank) {
    // The tokenizer directory: the SentencePiece models + this config (LoomSpmTokenizer reads it).
    core::write_file_atomic((run / "spm" / "config.json").string(), mcfg.to_json().dump(2) + "\n");
    nlohmann::json resolved = model_json;
    resolved["data"] = cfg.value("data", nlohmann::json::object());
    resolved["train"] = cfg.value("train", nlohmann::json::object());
    core::write_file_atomic((run / "config.json").string(), resolved.dump(2) + "\n");
  }
  comm->barrier();
  text::LoomSpmTokenizer tokenizer((run / "spm").string());

  int64_t dropped = 0;
  // A pair must fit the model's positions and, alone, the batch token budget.
  const int64_t max_src = std::min(mcfg.max_source_positions, mts.max_tokens);
  const int64_t max_tgt = std::min(mcfg.max_target_positions, mts.max_tokens);
  auto train_enc = encode_pairs(train_pairs, tokenizer, max_src, max_tgt, &dropped);
  int64_t dropped_valid = 0;
  std::vector<std::string> vsrc, vref;
  std::vector<train::EncodedPair> valid_enc;
  for (auto& p : valid_pairs) {
    train::EncodedPair e{tokenizer.encode_source(p.src), tokenizer.encode_target(p.tgt)};
    if (static_cast<int64_t>(e.src.size()) > mcfg.max_source_positions ||
        static_cast<int64_t>(e.tgt.size()) > mcfg.max_target_positions) {
      ++dropped_valid;
      continue;
    }
    valid_enc.push_back(std::move(e));
    vsrc.push_back(p.src);
    vref.push_back(p.tgt);
  }
  if (main_rank && !f.run.quiet && (dropped || dropped_valid))
    std::fprintf(stderr, "loom train: %lld train and %lld valid pairs longer than the model's max positions (train: or the batch budget) left out\n",
                 static_cast<long long>(dropped), static_cast<long long>(dropped_valid));

  // ---- model and task ----
  torch::manual_seed(topt.seed);
  auto model = std::make_shared<models::NativeSeq2Seq>(mcfg);
  auto forward = [&](const torch::Tensor& s, const torch::Tensor& m, const torch::Tensor& t) {
    return model->forward(s, m, t);
  };
  generate::GenerationOptions gen;
  gen.num_beams = mts.beam;
  gen.max_length = mcfg.max_target_positions;
  gen.decoder_start_token_id = mcfg.decoder_start_token_id;
  gen.eos_token_ids = {mcfg.eos_token_id};
  gen.pad_token_id = mcfg.pad_token_id;
  auto translate = [&](const std::vector<std::string>& src) {
    generate::Translator tr(*model, tokenizer, gen, generate::TranslatorOptions{});
    return tr.translate(src);
  };
  eval::BleuOptions bo;
  bo.tokenize = eval::parse_bleu_tokenizer(ds.bleu_tokenize);
  auto score = [&](const std::vector<std::string>& hyps, const std::vector<std::string>& refs) {
    std::map<std::string, double> s;
    s["bleu"] = eval::corpus_bleu(hyps, {refs}, bo).score;
    s["chrf"] = eval::corpus_chrf(hyps, {refs}).score;
    return s;
  };
  train::MtTaskOptions mo;
  mo.max_tokens = mts.max_tokens;
  mo.valid_max_tokens = std::max<int64_t>({mts.max_tokens, 1024, mcfg.max_source_positions, mcfg.max_target_positions});
  mo.label_smoothing = mts.label_smoothing;
  mo.seed = topt.seed;
  mo.pad_id = mcfg.pad_token_id;
  mo.bos_id = mcfg.decoder_start_token_id;
  mo.bleu_sentences = mts.bleu_sentences;
  train::MtTask task(*model, forward, std::move(train_enc), std::move(valid_enc), vsrc, vref,
                     translate, score, mo);
  train::Trainer trainer(task, topt, *comm);
  trainer.run();

  // ---- export (rank 0) ----
  if (main_rank) {
    std::string which = export_which;
    auto steps = trainer.step_checkpoints();
    if (which == "auto") which = mts.average_last > 1 ? "average" : (trainer.best_checkpoint().empty() ? "last" : "best");
    std::string note;
    if (which == "average") {
      const size_t n = static_cast<size_t>(std::max<int64_t>(1, mts.average_last));
      std::vector<std::string> last(steps.end() - static_cast<std::ptrdiff_t>(std::min(n, steps.size())), steps.end());
      train::average_checkpoints(*model, last);
      note = fmt::format("average of the last {} checkpoints", last.size());
    } else {
      note = load_exported_checkpoint(*model, trainer, topt, which);
    }
    model->eval();
    models::SaveOptions so;
    so.source_spm = (run / "spm" / "source.spm").string();
    so.target_spm = (run / "spm" / "target.spm").string();
    so.metadata = {{"loom_training", note}};
    models::save_native_model(*model, (run / "model").string(), so);
    if (!f.run.quiet) std::fprintf(stderr, "loom train: wrote %s (%s)\n", (run / "model").string().c_str(), note.c_str());
    // Score the exported model on the held-out test split.
    auto test_pairs = data::read_parallel_tsv((run / "data" / "test.tsv").string());
    if (!test_pairs.empty() && mts.bleu_sentences > 0) {
      std::vector<std::string> src, ref;
      for (auto& p : test_pairs) {
        src.push_back(p.src);
        ref.push_back(p.tgt);
      }
      std::vector<std::string> hyp;
      {
        torch::NoGradGuard ng;
        hyp = translate(src);
      }
      auto s = score(hyp, ref);
      nlohmann::json j = {{"model", note}, {"sentences", src.size()}, {"beam", mts.beam},
                          {"bleu_tokenize", ds.bleu_tokenize}};
      for (auto& [k, v] : s) j[k] = v;
      core::write_file_atomic((run / "test_scores.json").string(), j.dump(2) + "\n");
      if (!f.run.quiet)
        std::fprintf(stderr, "loom train: test set (%zu pairs): BLEU %.2f chrF %.2f\n", src.size(), s["bleu"], s["chrf"]);
    }
  }
  comm->barrier();
  return 0;
}

}  // namespace loom::pipeline
