#include "experiments/lib/lm_job.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <numbers>
#include <optional>
#include <ostream>

#include "autodiff/autocast.h"
#include "autodiff/tape.h"
#include "core/error.h"
#include "experiments/lib/descriptor.h"
#include "experiments/lib/lr_schedule.h"
#include "experiments/lib/machine_info.h"
#include "experiments/lib/progress.h"
#include "experiments/lib/run_dir.h"
#include "kernels/backend_info.h"
#include "models/checkpoint/checkpoint.h"
#include "models/graded/diagnostics.h"
#include "models/graded/grading.h"
#include "models/graph/diagnostics.h"
#include "models/io/atomic_file.h"
#include "models/io/safetensors.h"
#include "models/optim/adam.h"
#include "models/optim/clip.h"
#include "models/optim/sgd.h"

namespace gradus::experiments {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- training state checkpoint ------------------------------------------------------------------
//
// One file (models/checkpoint/checkpoint.h): the model under its Hugging Face Llama names, the
// optimiser state, the step and the generators; the run's own counters and its resolved
// descriptor go in the metadata under "run_*" keys.

// What a checkpoint holds besides the model and the optimiser.
struct RunState {
  int64_t step = 0;
  Generator data_gen;
  double best_val_loss = std::numeric_limits<double>::infinity();
  int64_t best_val_step = 0;
  double wall_s = 0.0;   // training and evaluation time, summed over sessions
  double train_s = 0.0;  // training steps only
  int64_t tokens = 0;    // tokens trained on
  int64_t sessions = 1;  // 1 + number of resumes
};

constexpr const char* kDescriptorKey = "run_descriptor";

void write_checkpoint(const std::string& path, const DecoderLM& lm, const Optimizer& opt,
                      const RunState& st, const Descriptor& d) {
  TrainingState ts;
  ts.step = st.step;
  ts.generators["data"] = st.data_gen;
  ts.metadata = {{kDescriptorKey, d.to_json().dump()},
                 {"run_best_val_loss", fmt::format("{}", st.best_val_loss)},
                 {"run_best_val_step", std::to_string(st.best_val_step)},
                 {"run_wall_s", fmt::format("{}", st.wall_s)},
                 {"run_train_s", fmt::format("{}", st.train_s)},
                 {"run_tokens", std::to_string(st.tokens)},
                 {"run_sessions", std::to_string(st.sessions)}};
  save_training_state(path, lm, opt, ts);
}

// Restores model, optimiser and counters from `path`.
RunState read_checkpoint(const std::string& path, DecoderLM& lm, Optimizer& opt) {
  TrainingState ts = load_training_state(path, lm, opt);
  auto value = [&](const char* key) -> const std::string& {
    auto it = ts.metadata.find(key);
    GRADUS_CHECK(it != ts.metadata.end(), "checkpoint",
                 "{}: metadata has no \"{}\" (not a checkpoint written by gradus run?)", path, key);
    return it->second;
  };
  auto it = ts.generators.find("data");
  GRADUS_CHECK(it != ts.generators.end(), "checkpoint", "{}: no \"data\" generator", path);
  RunState st;
  st.step = ts.step;
  st.data_gen = it->second;
  st.best_val_loss = std::stod(value("run_best_val_loss"));
  st.best_val_step = std::stoll(value("run_best_val_step"));
  st.wall_s = std::stod(value("run_wall_s"));
  st.train_s = std::stod(value("run_train_s"));
  st.tokens = std::stoll(value("run_tokens"));
  st.sessions = std::stoll(value("run_sessions"));
  return st;
}

// ---- setup --------------------------------------------------------------------------------------

// Weight decay applies to matrices (embedding, projections, head), never to the norm gains, as is
// usual for transformers: decaying a gain towards 0 fights the normalisation.
// Grade parameters of graded kinds (models/graded) form a third group, present only when the
// model has some: a learning rate of train.grade_lr_scale x the schedule's, no weight decay (decay
// would pull every grade towards 0, i.e. towards a singular LGT or a uniform EGT grading).
std::vector<ParamGroup> param_groups(const DecoderLM& lm, const TrainSpec& t) {
  ParamGroup decay{{}, t.lr, t.weight_decay, "decay"};
  ParamGroup no_decay{{}, t.lr, 0.0, "no_decay"};
  ParamGroup grades{{}, t.lr * t.grade_lr_scale, 0.0, "grades", t.grade_lr_scale};
  const std::vector<Tensor> grade_params = graded::grade_parameters(lm);
  auto is_grade = [&](const Tensor& p) {
    return std::any_of(grade_params.begin(), grade_params.end(),
                       [&](const Tensor& g) { return g.same(p); });
  };
  for (const Tensor& p : lm.parameters()) {
    if (is_grade(p))
      grades.params.push_back(p);
    else
      (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  }
  if (grades.params.empty()) return {decay, no_decay};
  return {decay, no_decay, grades};
}

std::unique_ptr<Optimizer> make_optimizer(const DecoderLM& lm, const TrainSpec& t) {
  std::vector<ParamGroup> groups = param_groups(lm, t);
  if (t.optimizer == "sgd")
    return std::make_unique<SGD>(groups, SGDOptions{.momentum = t.momentum});
  AdamOptions o{.beta1 = t.beta1, .beta2 = t.beta2, .eps = t.eps};
  if (t.optimizer == "adam") return std::make_unique<Adam>(groups, o);
  return std::make_unique<AdamW>(groups, o);
}

// Resolves the corpus file and loads the data set, checking that both splits hold a window.
TextDataset load_data(Descriptor& d, const std::string& project_root, std::string& corpus_file) {
  corpus_file = resolve_corpus(d.data.corpus, project_root);
  // A path is kept absolute in resolved.json so that resume and eval work from anywhere.
  if (!is_corpus_name(d.data.corpus)) d.data.corpus = corpus_file;
  TextDataset ds = TextDataset::from_file(corpus_file, d.data.val_fraction);
  for (Split s : {Split::train, Split::validation}) {
    GRADUS_CHECK(ds.size(s) >= d.data.context + 1, "data.context",
                 "the {} split of {} holds {} tokens, fewer than data.context + 1 = {} (lower "
                 "data.context or change data.val_fraction)",
                 split_name(s), corpus_file, ds.size(s), d.data.context + 1);
  }
  return ds;
}

// "cpu", "cuda" (an error naming the reason when no GPU is usable) or "auto" (the GPU when one is).
Device resolve_device(const std::string& device, const char* where) {
  if (device == "cpu") return kCPU;
  const bool have_gpu = kernels::cuda_device_count() > 0;
  if (device == "auto") return have_gpu ? Device{DeviceType::cuda, 0} : kCPU;
  GRADUS_CHECK(device == "cuda", where, "expected cpu, cuda or auto, found \"{}\"", device);
  GRADUS_CHECK(have_gpu, where, "\"cuda\" was asked for, but {}; use \"cpu\" or \"auto\"",
               kernels::cuda_built() ? kernels::cuda_description()
                                     : "this build has no CUDA backend (configure with "
                                       "-DGRADUS_CUDA=ON on a machine with the CUDA toolkit)");
  return Device{DeviceType::cuda, 0};
}

// Where a batch is used: token ids go to the model's device.
TokenBatch on_device(TokenBatch batch, Device device) {
  if (device.is_cpu()) return batch;
  return TokenBatch{raw_to_device(batch.inputs, device), raw_to_device(batch.targets, device)};
}

// The differences between two resolved descriptors, as "path (a vs b)".
void diff_json(const json& a, const json& b, const std::string& prefix,
               std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    for (const auto& [k, v] : a.items()) {
      std::string p = prefix.empty() ? k : prefix + "." + k;
      if (!b.contains(k))
        out.push_back(p + " (missing)");
      else
        diff_json(v, b[k], p, out);
    }
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) out.push_back((prefix.empty() ? k : prefix + "." + k) + " (new)");
    return;
  }
  if (a != b)
    out.push_back(fmt::format("{} ({} in the run, {} given)", prefix, a.dump(), b.dump()));
}

}  // namespace

// ---- evaluation ---------------------------------------------------------------------------------

WindowLoss evaluate_windows(DecoderLM& lm, SequentialWindows windows, int64_t max_batches) {
  bool was_training = lm.is_training();
  lm.eval();
  NoGradGuard no_grad;
  WindowLoss out;
  double sum = 0.0;
  TokenBatch batch;
  windows.reset();
  for (int64_t b = 0; (max_batches <= 0 || b < max_batches) && windows.next(batch); ++b) {
    int64_t n = batch.targets.numel();
    batch = on_device(std::move(batch), lm.device());
    sum += lm.loss(batch.inputs, batch.targets).item() * static_cast<double>(n);
    out.tokens += n;
    out.windows += batch.targets.size(0);
  }
  lm.train(was_training);
  out.mean_nats = out.tokens > 0 ? sum / static_cast<double>(out.tokens) : 0.0;
  return out;
}

// ---- gradus run ---------------------------------------------------------------------------------

LmRunResult run_lm(const LmRunOptions& given_options, std::ostream& out) {
  LmRunOptions options = given_options;
  if (!options.run_dir.empty()) {
    GRADUS_CHECK(options.resume_dir.empty(), "--run-dir",
                 "cannot be combined with --resume (a fixed run directory resumes by itself)");
    // A fixed directory that already holds a run continues it (the descriptor must match).
    if (fs::is_regular_file(fs::path(options.run_dir) / kResolvedFile))
      options.resume_dir = options.run_dir;
  }
  const bool resuming = !options.resume_dir.empty();
  const char* resume_flag = options.run_dir.empty() ? "--resume" : "--run-dir";
  Descriptor d;
  std::string run_dir;
  if (resuming) {
    run_dir = options.resume_dir;
    std::string resolved_path = (fs::path(run_dir) / kResolvedFile).string();
    GRADUS_CHECK(fs::is_regular_file(resolved_path), resume_flag,
                 "{} is not a run directory (it has no {})", run_dir, kResolvedFile);
    d = load_descriptor(resolved_path);
    if (!options.descriptor_path.empty()) {
      Descriptor given = load_descriptor(options.descriptor_path, options.overrides);
      // The name defaults to the file's stem, which the run directory already fixes.
      given.log.name = d.log.name;
      json a = d.to_json(), b = given.to_json();
      // A corpus path was made absolute when the run started.
      if (!is_corpus_name(b["data"]["corpus"])) b["data"]["corpus"] = a["data"]["corpus"];
      std::vector<std::string> diffs;
      diff_json(a, b, "", diffs);
      GRADUS_CHECK(diffs.empty(), resume_flag,
                   "{} (with its --set overrides) differs from the run's {}: {}; resume with the "
                   "run directory alone, or start a new run",
                   options.descriptor_path, kResolvedFile, fmt::join(diffs, "; "));
    } else {
      GRADUS_CHECK(options.overrides.empty(), resume_flag,
                   "--set cannot change a run being resumed (its descriptor is {})", resolved_path);
    }
  } else {
    GRADUS_CHECK(!options.descriptor_path.empty(), "gradus run", "no descriptor given");
    d = load_descriptor(options.descriptor_path, options.overrides);
  }
  const Device device = resolve_device(d.device, "device");
  const bool mixed_precision = d.train.precision == "bf16";
  GRADUS_CHECK(!mixed_precision || !device.is_cpu(), "train.precision",
               "\"bf16\" computes in bf16, which only the GPU backend does, but \"device\": \"{}\" "
               "resolved to the CPU; use \"f32\" here",
               d.device);

  // Everything that can fail on the inputs fails here, before any training.
  std::string corpus_file;
  TextDataset ds = load_data(d, options.project_root, corpus_file);
  Generator init_gen(d.seed);
  DecoderLM lm(d.model, init_gen);  // initialised on the CPU (same values on every device)
  lm.to(device);
  std::unique_ptr<Optimizer> opt = make_optimizer(lm, d.train);
  const std::vector<Tensor> params = opt->params();
  LrSchedule schedule{d.train.lr, d.train.min_lr, d.train.warmup_steps, d.train.steps,
                      parse_schedule_kind(d.train.schedule)};
  schedule.validate();

  RunState st;
  st.data_gen = Generator(d.seed, kDataStreamOffset);
  std::string checkpoint_path;
  if (resuming) {
    checkpoint_path = (fs::path(run_dir) / kCheckpointFile).string();
    // A run killed inside a write leaves that write's temporary file (never the real file torn):
    // it is not read, but a checkpoint-sized leftover would waste the disk.
    if (auto stale = remove_stale_temporaries(run_dir); !stale.empty())
      out << fmt::format("removed {} temporary file(s) of a killed run: {}\n", stale.size(),
                         fmt::join(stale, ", "));
    if (fs::exists(checkpoint_path)) {
      st = read_checkpoint(checkpoint_path, lm, *opt);
      st.sessions += 1;
    }
    // A completed run has nothing left to do: its summary stands.
    fs::path summary_path = fs::path(run_dir) / kSummaryFile;
    if (st.step >= d.train.steps && fs::is_regular_file(summary_path)) {
      std::ifstream in(summary_path);
      LmRunResult done{run_dir, true, st.step, json::parse(in)};
      out << fmt::format("{} is complete ({} steps); its summary is {}\n", run_dir, st.step,
                         summary_path.string());
      return done;
    }
  } else {
    if (options.run_dir.empty()) {
      run_dir = create_run_dir(d.log.dir, d.log.name);
    } else {
      run_dir = options.run_dir;
      std::error_code ec;
      fs::create_directories(run_dir, ec);
      GRADUS_CHECK(!ec, "--run-dir", "cannot create {}: {}", run_dir, ec.message());
    }
    checkpoint_path = (fs::path(run_dir) / kCheckpointFile).string();
    write_text_atomic((fs::path(run_dir) / kResolvedFile).string(), d.to_json().dump(2) + "\n");
  }
  // The machine of this session (a resumed run records where it continued).
  write_text_atomic((fs::path(run_dir) / kMachineFile).string(), machine_info().dump(2) + "\n");
  MetricsLog metrics((fs::path(run_dir) / kMetricsFile).string());
  metrics.load(st.step);

  const int64_t B = d.train.batch_size, T = d.data.context, total = d.train.steps;
  out << fmt::format(
      "{} {}: {} parameters, {} ({} training / {} validation tokens), {} x {} tokens per step, {} "
      "steps, {} lr {}\n",
      resuming ? (st.step > 0 ? fmt::format("resuming at step {}", st.step) : "restarting") : "run",
      run_dir, lm.num_parameters(), d.data.corpus, ds.size(Split::train),
      ds.size(Split::validation), B, T, total, d.train.optimizer, d.train.lr);

  LmRunResult result;
  result.run_dir = run_dir;
  Progress progress(out, options.tty, total, st.step);
  // A write that fails (a full disk, a directory gone read-only) stops the run; what was written
  // before stays intact, so the message says where the run can be resumed from.
  int64_t checkpoint_step = st.step;  // 0 when there is none yet
  auto write_or_stop = [&](int64_t step, const auto& write) {
    try {
      write();
    } catch (const Error& e) {
      progress.finish();
      throw Error(fmt::format(
          "{}; the run stopped after step {} and {}: fix the cause, then gradus run --resume {}",
          e.what(), step,
          checkpoint_step > 0 ? fmt::format("its checkpoint of step {} is intact", checkpoint_step)
                              : std::string("has no checkpoint yet (the resume starts it over)"),
          run_dir));
    }
  };
  const auto session_start = Clock::now();
  const double wall_before = st.wall_s;
  double window_loss = 0.0, window_train_s = 0.0;
  int64_t window_steps = 0;
  lm.train();
  AutocastWeights cast_weights;  // mixed precision: the weights cast in one call per step
  for (int64_t step = st.step; step < total; ++step) {
    const auto step_start = Clock::now();
    const double lr = schedule.at(step);
    for (ParamGroup& g : opt->param_groups()) g.lr = lr * g.lr_scale;
    TokenBatch batch = on_device(ds.sample(Split::train, B, T, st.data_gen), device);
    opt->zero_grad();
    Tensor loss_t;
    if (mixed_precision) {  // the forward only: the backward runs in the forward's dtypes
      AutocastGuard autocast(DType::bf16, DType::f32, &cast_weights);
      loss_t = lm.loss(batch.inputs, batch.targets);
    } else {
      loss_t = lm.loss(batch.inputs, batch.targets);
    }
    const double loss = loss_t.item();
    backward(loss_t);
    const double gnorm = d.train.clip_grad_norm > 0 ? clip_grad_norm(params, d.train.clip_grad_norm)
                                                    : grad_norm(params);
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      progress.finish();
      GRADUS_FAIL("training",
                  "diverged at step {}: loss {}, gradient norm {} (lower train.lr or "
                  "set train.clip_grad_norm; the last checkpoint is in {})",
                  step + 1, loss, gnorm, run_dir);
    }
    opt->step();
    const int64_t s = step + 1;
    st.step = s;
    st.tokens += B * T;
    const double step_s = seconds_since(step_start);
    st.train_s += step_s;
    window_train_s += step_s;
    window_loss += loss;
    ++window_steps;

    const bool last = s == total;
    const bool evaluate = last || (d.eval.every > 0 && s % d.eval.every == 0);
    const bool log = evaluate || s % d.log.every == 0;
    const double tokens_per_s = static_cast<double>(window_steps * B * T) / window_train_s;
    progress.update(s, log ? window_loss / window_steps : loss, lr, tokens_per_s, log);
    if (log) {
      json line = {{"step", s},
                   {"train_loss", window_loss / static_cast<double>(window_steps)},
                   {"lr", lr},
                   {"grad_norm", gnorm},
                   {"tokens_per_s", tokens_per_s}};
      // Graded kinds: kappa and the grades' range per operator; every grade at evaluations.
      if (json g = graded::grading_report(lm, evaluate); !g.is_null()) line["grading"] = g;
      if (evaluate) {
        // The evaluation after the last step covers the whole validation split.
        WindowLoss val =
            evaluate_windows(lm, ds.windows(Split::validation, B, T), last ? 0 : d.eval.batches);
        line["val_loss"] = val.mean_nats;
        // Graph kinds: GIN's alpha per layer and eps per head, PNA's delta (after the evaluation).
        if (json g = graph::graph_report(lm); !g.is_null()) line["graph"] = g;
        if (val.mean_nats < st.best_val_loss)
          st.best_val_loss = val.mean_nats, st.best_val_step = s;
        progress.note(
            fmt::format("step {}: val loss {:.4f} ({:.4f} bits/byte, {} tokens), best "
                        "{:.4f} at step {}",
                        s, val.mean_nats, val.mean_nats / std::numbers::ln2, val.tokens,
                        st.best_val_loss, st.best_val_step));
      }
      line["elapsed_s"] = wall_before + seconds_since(session_start);
      write_or_stop(s, [&] { metrics.append(line); });
      window_loss = window_train_s = 0.0;
      window_steps = 0;
    }
    if (evaluate) {
      st.wall_s = wall_before + seconds_since(session_start);
      write_or_stop(s, [&] { write_checkpoint(checkpoint_path, lm, *opt, st, d); });
      checkpoint_step = s;
    }
    if (options.stop_after_step > 0 && s == options.stop_after_step && !last) {
      progress.finish();
      result.step = s;
      return result;
    }
  }
  progress.finish();
  st.wall_s = wall_before + seconds_since(session_start);

  // The last metrics line carries the final losses (a run resumed after completion has them too).
  GRADUS_CHECK(!metrics.lines().empty() && metrics.lines().back().contains("val_loss"),
               "gradus run", "{}: the metrics log does not end with the final evaluation", run_dir);
  const json& final_line = metrics.lines().back();
  const double final_val = final_line["val_loss"];
  json summary = {{"name", d.log.name},
                  {"run_dir", run_dir},
                  {"corpus", d.data.corpus},
                  {"steps", st.step},
                  {"parameters", lm.num_parameters()},
                  {"tokens_trained", st.tokens},
                  {"final_train_loss", final_line["train_loss"]},
                  {"final_val_loss", final_val},
                  {"val_bits_per_byte", final_val / std::numbers::ln2},
                  {"val_tokens", ds.windows(Split::validation, B, T).num_windows() * T},
                  {"best_val_loss", st.best_val_loss},
                  {"best_val_step", st.best_val_step},
                  {"wall_time_s", st.wall_s},
                  {"train_time_s", st.train_s},
                  {"tokens_per_s", st.train_s > 0 ? st.tokens / st.train_s : 0.0},
                  {"sessions", st.sessions},
                  {"device", device.is_cpu() ? "cpu" : kernels::cuda_description()}};
  if (json g = graph::graph_report(lm); !g.is_null()) summary["graph"] = g;
  write_or_stop(st.step, [&] {
    write_text_atomic((fs::path(run_dir) / kSummaryFile).string(), summary.dump(2) + "\n");
  });
  out << fmt::format(
      "done: train loss {:.4f}, val loss {:.4f} ({:.4f} bits/byte), best {:.4f} at step {}, {} in "
      "{} ({:.0f} tokens/s)\n",
      final_line["train_loss"].get<double>(), final_val, final_val / std::numbers::ln2,
      st.best_val_loss, st.best_val_step, run_dir, format_duration(st.wall_s),
      summary["tokens_per_s"].get<double>());
  result.completed = true;
  result.step = st.step;
  result.summary = summary;
  return result;
}

// ---- gradus eval --------------------------------------------------------------------------------

json eval_lm(const LmEvalOptions& options) {
  std::string path = options.checkpoint;
  if (fs::is_directory(path)) path = (fs::path(path) / kCheckpointFile).string();
  GRADUS_CHECK(fs::is_regular_file(path), "gradus eval", "no checkpoint at {}", path);
  const Device device = resolve_device(options.device, "gradus eval --device");
  std::shared_ptr<DecoderLM> model = load_model(path);  // in eval mode
  DecoderLM& lm = *model;
  lm.to(device);
  const ModelConfig& config = lm.config();
  const SafetensorsFile file = load_safetensors(path);  // for the metadata

  // The run's descriptor: in the checkpoint's metadata, else in the run directory beside it.
  std::optional<Descriptor> d;
  if (auto it = file.metadata.find(kDescriptorKey); it != file.metadata.end()) {
    d = parse_descriptor(json::parse(it->second),
                         fmt::format("{} (metadata {})", path, kDescriptorKey));
  } else if (fs::path r = fs::path(path).parent_path() / kResolvedFile; fs::is_regular_file(r)) {
    d = load_descriptor(r.string());
  }
  const int64_t N = options.context > 0 ? options.context : config.max_position_embeddings;
  GRADUS_CHECK(N <= config.max_position_embeddings, "gradus eval",
               "--context {} exceeds the model's max_position_embeddings ({})", N,
               config.max_position_embeddings);
  const int64_t batch = options.batch_size > 0 ? options.batch_size : d ? d->train.batch_size : 16;
  std::string text;
  std::optional<TextDataset> ds;
  Split split = Split::train;
  if (!options.text_file.empty()) {
    text = options.text_file;
    ds.emplace(TextDataset::from_file(options.text_file, 0.0));
  } else {
    GRADUS_CHECK(d.has_value(), "gradus eval",
                 "{} carries no descriptor (and no {} is beside it), so there is no validation "
                 "split to default to: give --text FILE",
                 path, kResolvedFile);
    std::string corpus_file = resolve_corpus(d->data.corpus, options.project_root);
    ds.emplace(TextDataset::from_file(corpus_file, d->data.val_fraction));
    split = Split::validation;
    text = fmt::format("{} (validation split, the last {} of {} bytes)", d->data.corpus,
                       ds->size(Split::validation), ds->num_tokens());
  }
  GRADUS_CHECK(ds->size(split) >= N + 1, "gradus eval",
               "{} holds {} tokens, fewer than one window of --context {} plus its target", text,
               ds->size(split), N);
  WindowLoss loss = evaluate_windows(lm, ds->windows(split, batch, N));
  // The step is a tensor of a training-state file; a bare model file has none.
  int64_t step = -1;
  for (const auto& [name, t] : file.tensors)
    if (name == "training.step") step = static_cast<int64_t>(t.item());
  return json{{"checkpoint", path},
              {"text", text},
              {"context", N},
              {"windows", loss.windows},
              {"tokens", loss.tokens},
              {"cross_entropy_nats", loss.mean_nats},
              {"bits_per_byte", loss.mean_nats / std::numbers::ln2},
              {"step", step},
              {"device", device.str()}};
}

}  // namespace gradus::experiments
