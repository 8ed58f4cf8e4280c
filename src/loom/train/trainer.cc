#include "loom/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/core/files.h"
#include "loom/core/progress.h"
#include "loom/io/checkpoint.h"
#include "loom/io/safetensors.h"
#include "loom/train/flat_adam.h"
#include "loom/train/plot_metrics.h"

namespace fs = std::filesystem;

namespace loom::train {
namespace {

constexpr const char* kStepPrefix = "step-";

std::string step_dir_name(int64_t step) { return fmt::format("{}{:08d}", kStepPrefix, step); }

nlohmann::json state_to_json(const TrainState& s) {
  nlohmann::json best = std::isfinite(s.best) ? nlohmann::json(s.best) : nlohmann::json(nullptr);
  return {{"step", s.step},           {"epoch", s.epoch}, {"batch_index", s.batch_index},
          {"best", best},             {"best_step", s.best_step},
          {"wall_s", s.wall_s},       {"tokens", s.tokens}};
}

TrainState state_from_json(const nlohmann::json& j, const std::string& file) {
  TrainState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.batch_index = j.at("batch_index").get<int64_t>();
    // JSON has no infinity: "best" is null until a validation ran (best_step -1), and unused.
    s.best = j.at("best").is_null() ? 0.0 : j.at("best").get<double>();
    s.best_step = j.at("best_step").get<int64_t>();
    s.wall_s = j.at("wall_s").get<double>();
    s.tokens = j.at("tokens").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail(Where{file, 0, ""}, "bad training state: {}", e.what());
  }
  return s;
}

// Reads the tensors of a safetensors model file into a name -> tensor map (dtype kept).
std::map<std::string, torch::Tensor> read_model_file(const std::string& path) {
  io::SafetensorsFile f(path);
  std::map<std::string, torch::Tensor> out;
  for (const io::TensorInfo& info : f.tensors())
    out[info.name] = io::to_tensor(f, info, io::torch_dtype(info.dtype));
  return out;
}

void assign_model(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& source) {
  torch::NoGradGuard no_grad;
  auto mine = model_tensors(model);
  std::set<std::string> names;
  for (auto& [name, t] : mine) {
    names.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) fail(Where{source, 0, name}, "tensor missing from checkpoint");
    if (it->second.sizes() != t.sizes())
      fail(Where{source, 0, name}, "shape {} in checkpoint, model expects {}", c10::str(it->second.sizes()), c10::str(t.sizes()));
    t.copy_(it->second);
  }
  for (auto& [name, t] : tensors)
    if (!names.count(name)) fail(Where{source, 0, name}, "checkpoint tensor not in the model");
}

torch::Tensor rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

double jnum(const nlohmann::json& j, const std::string& where, const char* key) {
  if (!j.is_number()) fail(Where{"", 0, where + "." + key}, "must be a number, got {}", j.dump());
  return j.get<double>();
}
int64_t jint(const nlohmann::json& j, const std::string& where, const char* key) {
  if (!j.is_number_integer()) fail(Where{"", 0, where + "." + key}, "must be an integer, got {}", j.dump());
  return j.get<int64_t>();
}
std::string jstr(const nlohmann::json& j, const std::string& where, const char* key) {
  if (!j.is_string()) fail(Where{"", 0, where + "." + key}, "must be a string, got {}", j.dump());
  return j.get<std::string>();
}

}  // namespace

TrainerOptions trainer_options_from_json(const nlohmann::json& j, const std::string& where,
                                         TrainerOptions o) {
  if (!j.is_object()) fail(Where{"", 0, where}, "must be a JSON object");
  for (auto& [k, v] : j.items()) {
    const char* key = k.c_str();
    if (k == "steps") o.max_steps = jint(v, where, key);
    else if (k == "update_freq") o.update_freq = jint(v, where, key);
    else if (k == "lr") o.schedule.lr = jnum(v, where, key);
    else if (k == "schedule") o.schedule.kind = jstr(v, where, key);
    else if (k == "warmup_steps") o.schedule.warmup_steps = jint(v, where, key);
    else if (k == "warmup_init_lr") o.schedule.warmup_init_lr = jnum(v, where, key);
    else if (k == "min_lr") o.schedule.min_lr = jnum(v, where, key);
    else if (k == "optimizer") o.optimizer = jstr(v, where, key);
    else if (k == "adam_betas") {
      if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
        fail(Where{"", 0, where + ".adam_betas"}, "must be [beta1, beta2], got {}", v.dump());
      o.beta1 = v[0].get<double>();
      o.beta2 = v[1].get<double>();
    } else if (k == "adam_eps") o.adam_eps = jnum(v, where, key);
    else if (k == "weight_decay") o.weight_decay = jnum(v, where, key);
    else if (k == "clip_norm") o.clip_norm = jnum(v, where, key);
    else if (k == "log_every") o.log_every = jint(v, where, key);
    else if (k == "valid_every") o.valid_every = jint(v, where, key);
    else if (k == "save_every") o.save_every = jint(v, where, key);
    else if (k == "keep_last") o.keep_last = jint(v, where, key);
    else if (k == "best_metric") o.best_metric = jstr(v, where, key);
    else if (k == "seed") o.seed = static_cast<uint64_t>(jint(v, where, key));
    else fail(Where{"", 0, where + "." + k}, "unknown training option");
  }
  try {
    validate(o);
  } catch (const Error& e) {
    const std::string field = e.where().field;
    fail(Where{"", 0, field.empty() ? where : where + "." + field}, "{}", e.message());
  }
  return o;
}

void validate(const TrainerOptions& o) {
  auto need = [](bool ok, const char* field, const std::string& what) {
    if (!ok) fail(Where{"", 0, field}, "{}", what);
  };
  need(o.max_steps >= 1, "steps", fmt::format("must be >= 1, got {}", o.max_steps));
  need(o.update_freq >= 1, "update_freq", fmt::format("must be >= 1, got {}", o.update_freq));
  need(o.optimizer == "adam" || o.optimizer == "adamw", "optimizer",
       fmt::format("must be \"adam\" or \"adamw\", got \"{}\"", o.optimizer));
  need(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "adam_betas",
       fmt::format("betas must be in [0, 1), got [{}, {}]", o.beta1, o.beta2));
  need(o.adam_eps > 0, "adam_eps", fmt::format("must be > 0, got {}", o.adam_eps));
  need(o.weight_decay >= 0, "weight_decay", fmt::format("must be >= 0, got {}", o.weight_decay));
  need(o.clip_norm >= 0, "clip_norm", fmt::format("must be >= 0, got {}", o.clip_norm));
  need(o.log_every >= 1, "log_every", fmt::format("must be >= 1, got {}", o.log_every));
  need(o.valid_every >= 0, "valid_every", fmt::format("must be >= 0, got {}", o.valid_every));
  need(o.save_every >= 0, "save_every", fmt::format("must be >= 0, got {}", o.save_every));
  need(o.keep_last >= 1, "keep_last", fmt::format("must be >= 1, got {}", o.keep_last));
  need(!o.best_metric.empty(), "best_metric", "must not be empty");
  ScheduleOptions s = o.schedule;
  if (s.kind == "cosine" && s.total_steps == 0) s.total_steps = o.max_steps;
  validate(s);
}

std::vector<std::pair<std::string, torch::Tensor>> model_tensors(torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value());
  for (auto& b : model.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

void load_model_from_checkpoint(torch::nn::Module& model, const std::string& checkpoint) {
  fs::path file = fs::path(checkpoint) / "model.safetensors";
  if (!fs::exists(file)) fail(Where{file.string(), 0, ""}, "checkpoint has no model.safetensors");
  assign_model(model, read_model_file(file.string()), file.string());
}

void average_checkpoints(torch::nn::Module& model, const std::vector<std::string>& checkpoints) {
  if (checkpoints.empty()) fail("no checkpoints to average");
  std::map<std::string, torch::Tensor> sum;
  std::string first;
  for (const std::string& c : checkpoints) {
    std::string file = (fs::path(c) / "model.safetensors").string();
    auto t = read_model_file(file);
    if (sum.empty()) {
      first = file;
      for (auto& [k, v] : t) sum[k] = v.to(torch::kFloat64);
      continue;
    }
    if (t.size() != sum.size()) fail(Where{file, 0, ""}, "has {} tensors, {} has {}", t.size(), first, sum.size());
    for (auto& [k, v] : t) {
      auto it = sum.find(k);
      if (it == sum.end()) fail(Where{file, 0, k}, "tensor not in {}", first);
      if (it->second.sizes() != v.sizes()) fail(Where{file, 0, k}, "shape {} differs from {} in {}", c10::str(v.sizes()), c10::str(it->second.sizes()), first);
      it->second.add_(v.to(torch::kFloat64));
    }
  }
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> avg;
  for (auto& [name, t] : model_tensors(model)) {
    auto it = sum.find(name);
    if (it == sum.end()) fail(Where{checkpoints.front(), 0, name}, "tensor missing from checkpoint");
    if (torch::isFloatingType(t.scalar_type()))
      avg[name] = (it->second / static_cast<double>(checkpoints.size())).to(t.scalar_type());
    else  // integer buffers (step counters, ids): take the newest checkpoint's value
      avg[name] = read_model_file((fs::path(checkpoints.back()) / "model.safetensors").string())[name];
  }
  assign_model(model, avg, checkpoints.front());
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  fs::path path = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      // A line cut short by a kill: everything after it belongs to a step a resume redoes.
      break;
    }
  }
  return out;
}

void write_training_plots(const std::string& run_dir, const std::vector<nlohmann::json>& records) {
  plot_metrics(run_dir, records);
}

// ---------------------------------------------------------------------------------------------

struct Trainer::Impl {
  TrainTask& task;
  TrainerOptions opt;
  Communicator& comm;
  std::vector<torch::Tensor> params;
  std::unique_ptr<FlatAdam> optimizer;  // Adam/AdamW + clipping in one pass (torch::optim's file format)
  fs::path run, ckpt_dir;
  std::vector<nlohmann::json> records;

  Impl(TrainTask& t, TrainerOptions o, Communicator& c) : task(t), opt(std::move(o)), comm(c) {
    if (opt.schedule.kind == "cosine" && opt.schedule.total_steps == 0)
      opt.schedule.total_steps = opt.max_steps;
    run = opt.run_dir;
    ckpt_dir = run / "checkpoints";
    for (auto& p : task.model().parameters())
      if (p.requires_grad()) params.push_back(p);
    if (params.empty()) fail("the model has no trainable parameters");
    FlatAdamOptions ao;
    ao.lr = opt.schedule.lr;
    ao.beta1 = opt.beta1;
    ao.beta2 = opt.beta2;
    ao.eps = opt.adam_eps;
    ao.weight_decay = opt.weight_decay;
    ao.decoupled = opt.optimizer == "adamw";
    optimizer = std::make_unique<FlatAdam>(params, ao);
  }

  bool is_main() const { return comm.rank() == 0; }

  std::vector<fs::path> step_dirs() const {
    std::vector<fs::path> out;
    if (!fs::is_directory(ckpt_dir)) return out;
    for (auto& e : fs::directory_iterator(ckpt_dir)) {
      std::string name = e.path().filename().string();
      if (e.is_directory() && name.rfind(kStepPrefix, 0) == 0 &&
          fs::exists(e.path() / "state.json"))
        out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // All ranks: gathers each rank's torch RNG state into a [world, L] tensor (valid on rank 0).
  torch::Tensor gather_rng() {
    auto mine = rng_state();
    auto all = torch::zeros({comm.world_size(), mine.numel()}, torch::kInt32);
    all[comm.rank()].copy_(mine.to(torch::kInt32));
    comm.all_reduce_sum(all);
    return all.to(torch::kUInt8);
  }

  void write_dir_atomic(const fs::path& final_dir, const std::function<void(const fs::path&)>& fill) {
    fs::path tmp = final_dir.parent_path() / ("." + final_dir.filename().string() + ".tmp");
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    fill(tmp);
    if (fs::exists(final_dir)) {
      fs::path old = final_dir.parent_path() / ("." + final_dir.filename().string() + ".old");
      fs::remove_all(old);
      fs::rename(final_dir, old);
      fs::rename(tmp, final_dir);
      fs::remove_all(old);
    } else {
      fs::rename(tmp, final_dir);
    }
  }

  // Collective: every rank calls it; rank 0 writes checkpoints/step-N.
  void save_checkpoint(const TrainState& st) {
    auto rng = gather_rng();
    if (!is_main()) return;
    fs::create_directories(ckpt_dir);
    write_dir_atomic(ckpt_dir / step_dir_name(st.step), [&](const fs::path& d) {
      io::write_safetensors((d / "model.safetensors").string(), model_tensors(task.model()));
      torch::serialize::OutputArchive ar;
      optimizer->save(ar);
      ar.write("rng", rng);
      ar.save_to((d / "optimizer.pt").string());
      nlohmann::json j = state_to_json(st);
      j["world_size"] = comm.world_size();
      j["seed"] = opt.seed;
      core::write_file_atomic((d / "state.json").string(), j.dump(2) + "\n");
    });
    auto dirs = step_dirs();
    for (size_t i = 0; i + static_cast<size_t>(opt.keep_last) < dirs.size(); ++i) fs::remove_all(dirs[i]);
  }

  void save_best(const TrainState& st) {
    write_dir_atomic(ckpt_dir / "best", [&](const fs::path& d) {
      io::write_safetensors((d / "model.safetensors").string(), model_tensors(task.model()));
      core::write_file_atomic((d / "state.json").string(), state_to_json(st).dump(2) + "\n");
    });
  }

  // Loads the newest step checkpoint; returns false when there is none.
  bool load_latest(TrainState& st) {
    auto dirs = step_dirs();
    if (dirs.empty()) return false;
    const fs::path d = dirs.back();
    const std::string state_file = (d / "state.json").string();
    const nlohmann::json j = core::read_json(state_file);
    st = state_from_json(j, state_file);
    load_model_from_checkpoint(task.model(), d.string());
    torch::serialize::InputArchive ar;
    const std::string opt_file = (d / "optimizer.pt").string();
    try {
      ar.load_from(opt_file);
      optimizer->load(ar);
    } catch (const c10::Error& e) {
      fail(Where{opt_file, 0, ""}, "cannot load optimizer state: {}", e.what_without_backtrace());
    }
    torch::Tensor rng;
    ar.read("rng", rng);
    int saved_world = j.value("world_size", 1);
    if (saved_world == comm.world_size() && rng.size(0) == comm.world_size()) {
      set_rng_state(rng[comm.rank()].contiguous());
    } else {
      // A different number of workers: the data order is unchanged, dropout noise restarts.
      torch::manual_seed(opt.seed + 1000003ULL * static_cast<uint64_t>(st.step) + comm.rank());
    }
    return true;
  }

  void append_record(const nlohmann::json& r) {
    records.push_back(r);
    if (!is_main()) return;
    std::ofstream out(run / "metrics.jsonl", std::ios::app);
    out << r.dump() << '\n';
    out.flush();
  }

  void rewrite_records(int64_t max_step) {
    records = read_metrics(run.string());
    records.erase(std::remove_if(records.begin(), records.end(),
                                 [&](const nlohmann::json& r) { return r.value("step", int64_t{0}) > max_step; }),
                  records.end());
    if (!is_main()) return;
    std::string text;
    for (auto& r : records) text += r.dump() + "\n";
    core::write_file_atomic((run / "metrics.jsonl").string(), text);
  }
};

Trainer::Trainer(TrainTask& task, TrainerOptions options, Communicator& comm) {
  validate(options);
  if (options.run_dir.empty()) fail(Where{"", 0, "run_dir"}, "must not be empty");
  impl_ = std::make_unique<Impl>(task, std::move(options), comm);
  if (!impl_->opt.resume && !impl_->step_dirs().empty())
    fail(Where{impl_->ckpt_dir.string(), 0, ""},
         "run directory already has checkpoints; pass --resume to continue it or choose another --out");
  if (impl_->is_main()) fs::create_directories(impl_->run);
}

Trainer::~Trainer() = default;

std::string Trainer::best_checkpoint() const {
  fs::path b = impl_->ckpt_dir / "best";
  return fs::exists(b / "model.safetensors") ? b.string() : std::string();
}

std::vector<std::string> Trainer::step_checkpoints() const {
  std::vector<std::string> out;
  for (auto& p : impl_->step_dirs()) out.push_back(p.string());
  return out;
}

TrainState Trainer::run() {
  Impl& m = *impl_;
  const TrainerOptions& o = m.opt;
  TrainTask& task = m.task;
  Communicator& comm = m.comm;
  torch::nn::Module& model = task.model();
  const int rank = comm.rank(), world = comm.world_size();

  TrainState st;
  bool resumed = o.resume && m.load_latest(st);
  if (!resumed) {
    // Same weights on every rank (rank 0's), then per-rank dropout noise.
    std::vector<torch::Tensor> all;
    for (auto& [n, t] : model_tensors(model)) all.push_back(t);
    broadcast_tensors(comm, all, 0);
    torch::manual_seed(o.seed + static_cast<uint64_t>(rank));
    st.best = o.best_higher ? -INFINITY : INFINITY;
  }
  m.rewrite_records(st.step);
  if (m.is_main() && resumed)
    std::fprintf(stderr, "loom train: resumed from step %lld (epoch %lld, batch %lld)\n",
                 static_cast<long long>(st.step), static_cast<long long>(st.epoch),
                 static_cast<long long>(st.batch_index));

  const int64_t n_batches = task.num_batches();
  if (n_batches < 1) fail("the training data has no batches");
  core::Progress progress(stderr, core::Progress::Options{o.progress && m.is_main() && core::is_terminal(stderr),
                                                           0.25, o.max_steps, st.step});
  const bool plain_log = o.progress && m.is_main() && !core::is_terminal(stderr);

  auto t_run = std::chrono::steady_clock::now();
  const double wall_before = st.wall_s;
  auto wall_now = [&] {
    return wall_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  };
  double log_loss = 0, log_nll = 0, log_tokens = 0;
  double log_t0 = wall_now();
  const int64_t start_step = st.step;

  auto do_validate = [&]() {
    if (!m.is_main()) return;
    model.eval();
    std::map<std::string, double> metrics;
    {
      torch::NoGradGuard ng;
      metrics = task.validate();
    }
    model.train();
    nlohmann::json r = {{"step", st.step}, {"kind", "valid"}, {"wall_s", wall_now()}};
    for (auto& [k, v] : metrics) r[k] = v;
    m.append_record(r);
    auto it = metrics.find(o.best_metric);
    if (it != metrics.end() && std::isfinite(it->second) &&
        (st.best_step < 0 || (o.best_higher ? it->second > st.best : it->second < st.best))) {
      st.best = it->second;
      st.best_step = st.step;
      m.save_best(st);
    }
    std::string line = fmt::format("step {} | valid", st.step);
    for (auto& [k, v] : metrics) line += fmt::format(" {} {:.4g}", k, v);
    if (o.progress) progress.finish(line);
    if (o.plots) write_training_plots(m.run.string(), m.records);
  };

  model.train();
  for (auto& p : m.params) p.mutable_grad() = torch::Tensor();
  while (st.step < o.max_steps) {
    double loss_sum = 0, nll_sum = 0, tok = 0;
    for (int64_t k = 0; k < o.update_freq; ++k) {
      LossSum ls = task.batch_loss(st.epoch, st.batch_index, rank, world);
      if (ls.n_tokens > 0 && ls.loss.requires_grad()) ls.loss.backward();
      if (ls.n_tokens > 0) {
        loss_sum += ls.loss.item<double>();
        nll_sum += ls.nll.defined() ? ls.nll.item<double>() : 0.0;
      }
      tok += static_cast<double>(ls.n_tokens);
      if (++st.batch_index >= n_batches) {
        st.batch_index = 0;
        ++st.epoch;
      }
    }
    all_reduce_gradients(comm, m.params);
    auto stats = torch::tensor({loss_sum, nll_sum, tok}, torch::kFloat64);
    comm.all_reduce_sum(stats);
    const double total_tok = stats[2].item<double>();
    if (total_tok <= 0) fail("update {} saw no target tokens (empty batches)", st.step + 1);
    // Gradients / total_tok, clipped to clip_norm, Adam(W): one fused pass over all parameters.
    const double lr = learning_rate(o.schedule, st.step + 1);
    m.optimizer->step(lr, 1.0 / total_tok, o.clip_norm);
    for (auto& p : m.params) p.mutable_grad() = torch::Tensor();
    ++st.step;
    st.tokens += total_tok;
    log_loss += stats[0].item<double>();
    log_nll += stats[1].item<double>();
    log_tokens += total_tok;

    const bool last = st.step == o.max_steps;
    if (st.step % o.log_every == 0 || last) {
      double now = wall_now();
      double tps = log_tokens / std::max(1e-9, now - log_t0);
      nlohmann::json r = {{"step", st.step}, {"kind", "train"}, {"epoch", st.epoch},
                          {"train_loss", log_loss / log_tokens}, {"train_nll", log_nll / log_tokens},
                          {"lr", lr}, {"tokens_per_s", tps}, {"wall_s", now}};
      m.append_record(r);
      std::string line = fmt::format("step {}/{} | loss {:.4f} | lr {:.3g} | {} tok/s", st.step,
                                     o.max_steps, log_loss / log_tokens, lr, core::format_count(tps));
      progress.update(st.step, line, last);
      if (plain_log) {
        const double eta = (o.max_steps - st.step) * (now - wall_before) /
                           static_cast<double>(std::max<int64_t>(1, st.step - start_step));
        std::fprintf(stderr, "%s | ETA %s\n", line.c_str(), core::format_duration(eta).c_str());
      }
      log_loss = log_nll = log_tokens = 0;
      log_t0 = now;
    }
    if ((o.valid_every > 0 && st.step % o.valid_every == 0) || last) {
      st.wall_s = wall_now();
      do_validate();
    }
    if ((o.save_every > 0 && st.step % o.save_every == 0) || last) {
      st.wall_s = wall_now();
      m.save_checkpoint(st);
    }
  }
  st.wall_s = wall_now();
  state_ = st;
  comm.barrier();
  return st;
}

}  // namespace loom::train
