#include "loom/pipeline/train_job.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "loom/core/config_fields.h"
#include "loom/core/error.h"
#include "loom/core/files.h"

namespace loom::pipeline {
namespace {

// core::config_fields for one section: reads `key`, renames the error's field to
// "<section>.<key>", and erases the key.
template <typename F>
auto take_with(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, F read) {
  try {
    auto v = read();
    j.erase(key);
    return v;
  } catch (const Error& e) {
    fail(Where{file, 0, section + "." + key}, "{}", e.message());
  }
}

}  // namespace

template <>
int64_t take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, int64_t def) {
  return take_with(j, file, section, key, [&] { return core::get_int(j, file, key, def); });
}
template <>
uint64_t take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, uint64_t def) {
  return take_with(j, file, section, key, [&] {
    return static_cast<uint64_t>(core::get_int(j, file, key, static_cast<int64_t>(def), 0));
  });
}
template <>
double take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, double def) {
  return take_with(j, file, section, key, [&] { return core::get_double(j, file, key, def); });
}
template <>
bool take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key, bool def) {
  return take_with(j, file, section, key, [&] { return core::get_bool(j, file, key, def); });
}
template <>
std::string take_field(nlohmann::json& j, const std::string& file, const std::string& section, const char* key,
                       std::string def) {
  return take_with(j, file, section, key, [&] { return core::get_string(j, file, key, def); });
}

void reject_unknown_fields(const nlohmann::json& j, const std::string& file, const std::string& section) {
  for (auto& [k, v] : j.items()) fail(Where{file, 0, section + "." + k}, "unknown option");
}

nlohmann::json read_config_object(const std::string& path) {
  nlohmann::json cfg = core::read_json(path);
  if (!cfg.is_object()) fail(Where{path, 0, ""}, "config must be a JSON object");
  return cfg;
}

void apply_run_options(const TrainRunOptions& run, train::TrainerOptions* topt) {
  if (run.steps) topt->max_steps = *run.steps;
  if (run.lr) topt->schedule.lr = *run.lr;
  if (run.seed) topt->seed = *run.seed;
  if (run.valid_every) topt->valid_every = *run.valid_every;
  if (run.save_every) topt->save_every = *run.save_every;
  topt->run_dir = run.out;
  topt->resume = run.resume;
  topt->progress = !run.quiet;
}

std::optional<int> run_as_local_workers(int nproc) {
  if (nproc < 1) fail(Where{"", 0, "--nproc"}, "must be >= 1, got {}", nproc);
  if (nproc > 1 && !std::getenv("WORLD_SIZE")) return train::run_local_workers(train::worker_command_line(), nproc);
  return std::nullopt;
}

std::unique_ptr<train::Communicator> start_process_group() {
  auto comm = train::make_communicator(train::distributed_env_from_environment());
  if (comm->world_size() > 1 && !std::getenv("OMP_NUM_THREADS")) {
    // Local workers share the machine's cores: split them instead of oversubscribing.
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    torch::set_num_threads(static_cast<int>(std::max<unsigned>(1, hw / static_cast<unsigned>(comm->world_size()))));
  }
  return comm;
}

std::string load_exported_checkpoint(torch::nn::Module& model, const train::Trainer& trainer,
                                     const train::TrainerOptions& topt, const std::string& which) {
  if (which == "best") {
    if (trainer.best_checkpoint().empty()) fail(Where{"", 0, "--export"}, "no best checkpoint (no validation ran)");
    train::load_model_from_checkpoint(model, trainer.best_checkpoint());
    return fmt::format("best checkpoint by {} (step {})", topt.best_metric, trainer.state().best_step);
  }
  train::load_model_from_checkpoint(model, trainer.step_checkpoints().back());
  return fmt::format("final checkpoint (step {})", trainer.state().step);
}

}  // namespace loom::pipeline
