// `loom init-model --like NAME OUT`: writes a random-weight Hugging Face checkpoint with a real
// model's architecture and tokenizer, for benchmarks and experiments without downloads.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "loom/cli/commands.h"
#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/paths.h"
#include "loom/io/checkpoint.h"
#include "loom/models/causal_lm.h"
#include "loom/models/hf_init.h"

namespace loom::cli {
namespace fs = std::filesystem;

namespace {

void write_json(const fs::path& path, const nlohmann::json& j) {
  core::write_file_atomic(path.string(), j.dump(2) + "\n");
}

void run_init_model(const std::string& like, const std::string& out_dir, uint64_t seed, bool force,
                    const std::string& dtype_name) {
  const models::ModelPreset* preset = nullptr;
  std::string names;
  for (const auto& p : models::model_presets()) {
    if (p.name == like || p.hub_id == like) preset = &p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  if (!preset) fail(Where{"", 0, "--like"}, "unknown model '{}'; known: {}", like, names);
  fs::path out(out_dir);
  if (fs::exists(out / "model.safetensors") && !force) {
    fail(Where{out.string()}, "already holds a model.safetensors (use --force to overwrite)");
  }
  fs::create_directories(out);
  const fs::path tok = core::data_dir() / "tokenizers" / preset->tokenizer;
  if (!fs::is_directory(tok)) fail(Where{tok.string()}, "tokenizer files for '{}' not found", like);
  for (const auto& entry : fs::directory_iterator(tok)) {
    const auto name = entry.path().filename().string();
    if (name == "config.json" || name == "generation_config.json" || name.rfind("README", 0) == 0 ||
        name == "metadata.json" || name == "SOURCES.md") {
      continue;
    }
    fs::copy_file(entry.path(), out / name, fs::copy_options::overwrite_existing);
  }
  torch::ScalarType dtype = torch::kFloat32;
  if (dtype_name == "bfloat16") dtype = torch::kBFloat16;
  else if (dtype_name == "float16") dtype = torch::kFloat16;
  else if (dtype_name != "float32")
    fail(Where{"", 0, "--dtype"}, "unknown dtype '{}' (expected float32, bfloat16 or float16)", dtype_name);
  nlohmann::json config = preset->config;
  const nlohmann::json meta{{"format", "pt"}, {"loom_random_init_seed", std::to_string(seed)}};
  const std::string weights_file = (out / "model.safetensors").string();
  int64_t params = 0;
  std::fprintf(stderr, "init-model: generating random weights for %s ...\n", preset->name.c_str());
  if (models::is_hf_causal_lm(config)) {
    // Decoder LMs: streamed, one tensor in memory at a time (gemma-2b is 10 GB as float32).
    config["torch_dtype"] = dtype_name;
    auto ckpt = models::random_causal_lm_weights(config, seed, dtype);
    std::vector<io::TensorSpec> specs;
    for (const auto& [name, shape] : ckpt.specs) {
      specs.push_back({name, dtype, shape});
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      params += n;
    }
    io::write_safetensors_streamed(weights_file, specs, ckpt.make, meta);
  } else {
    if (dtype != torch::kFloat32) fail(Where{"", 0, "--dtype"}, "translation presets are written as float32 only");
    auto weights = models::random_seq2seq_weights(config, seed);
    for (const auto& [name, t] : weights) params += t.numel();
    io::write_safetensors(weights_file, weights, meta);
  }
  write_json(out / "config.json", config);
  write_json(out / "generation_config.json", preset->generation_config);
  std::fprintf(stderr, "init-model: wrote %s (%s architecture, %.1fM parameters, random weights)\n",
               out.string().c_str(), preset->hub_id.c_str(), static_cast<double>(params) / 1e6);
}

}  // namespace

void add_init_model(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init-model", "Write a random-weight HF checkpoint with a real model's architecture and tokenizer");
  static std::string like, out;
  static uint64_t seed = 1234;
  static bool force = false;
  static std::string dtype = "float32";
  cmd->add_option("--like", like,
                  "Architecture to copy: opus-mt-en-zh, nllb-200-distilled-600M, gemma-2b, llama-3.2-1b, "
                  "llama-tiny, qwen2-tiny, gemma3-tiny")
      ->required();
  cmd->add_option("--dtype", dtype, "Weight dtype of decoder LMs: float32, bfloat16 or float16")->capture_default_str();
  cmd->add_option("OUT", out, "Output directory")->required();
  cmd->add_option("--seed", seed, "Random seed")->capture_default_str();
  cmd->add_flag("--force", force, "Overwrite an existing checkpoint");
  cmd->callback([] { run_init_model(like, out, seed, force, dtype); });
}

}  // namespace loom::cli
