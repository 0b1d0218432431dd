// The typed run config: one struct per top-level section, defaults inline, one visit() each.
// Config::load() reads YAML (+ extends, + overrides), validates everything and throws one
// ConfigError listing every problem before any work starts. See docs/config.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config/section.h"

namespace sculpt::config {

struct RunConfig : Section {
  std::string name = "run";     // run name; the run directory defaults to runs/<name>
  std::string output_dir;       // run directory; empty: runs/<name>
  int64_t seed = 0;             // seeds torch and std RNGs (every rank alike), >= 0
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  std::string resume;           // "" fresh, "auto" latest checkpoint of this run, or a path
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

struct LoggingConfig : Section {
  std::string level = "info";  // trace | debug | info | warn | error | off
  void visit(Visitor& v) override;
};

struct DataConfig : Section {
  std::string name;                    // registered dataset
  std::shared_ptr<Section> options;    // the dataset's own keys, beside `name`
  int64_t batch_size = 64;             // samples per step (per rank), >= 1
  double val_fraction = 0.1;           // share held out for validation, in [0, 1)
  int64_t split_seed = 0;              // seed of the train/val split
  bool shuffle = true;                 // reshuffle the training set every epoch
  bool drop_last = false;              // drop the last incomplete batch of an epoch
  std::vector<double> normalize_mean;  // per-channel mean subtracted from inputs; empty: off
  std::vector<double> normalize_std;   // per-channel divisor (> 0), as long as normalize_mean
  int64_t random_crop_padding = 0;     // train images: zero-pad by P, random crop back; 0: off
  bool hflip = false;                  // train images: horizontal flip with probability 0.5
  int64_t prefetch = 2;                // batches prepared ahead on a thread, >= 0; 0: inline
  // Not keys: filled when the config is read (Config::load/parse), for datasets that read text
  // through a tokenizer (core/data/text_files.h).
  std::string default_tokenizer;  // tokenizer.path, else model.path when model.name is hf
  std::string hf_model_path;      // model.path when model.name is hf (its config.json's ids)
  std::string run_dir;            // the run directory (run.output_dir, else runs/<run.name>)
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

// The tokenizer text datasets read with (docs/text.md): a Hugging Face folder, a tokenizer.json
// or a SentencePiece .model file. Empty: the model's folder when model.name is hf.
struct TokenizerConfig : Section {
  std::string path;
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

// `export:` — what `sculpt train` exports at the end of a finished run (rank 0), as
// `sculpt export RUN --format F` would: <run>/export-<format>, replaced when it exists.
struct ExportConfig : Section {
  std::vector<std::string> formats;  // hf, compressed-tensors, onnx; empty: no export
  bool verify = true;                // each export's parity check (as without --no-verify)
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

struct ModelConfig : Section {
  std::string name;                  // registered model
  std::shared_ptr<Section> options;  // the model's own keys, beside `name`
  std::string init;  // start from these weights: a .safetensors file, a run or checkpoint folder
  std::vector<std::string> init_blocks;  // blocks of `init` to load, one per block of this model
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

struct TaskConfig : Section {
  std::string name = "classification";  // registered task (loss + metrics)
  std::shared_ptr<Section> options;
  void visit(Visitor& v) override;
};

struct OptimizerConfig : Section {
  std::string name = "sgd";  // registered optimizer
  std::shared_ptr<Section> options;
  double lr = 0.1;                 // base learning rate, > 0
  double weight_decay = 0.0;       // L2 / decoupled weight decay, >= 0
  bool no_decay_bias_norm = true;  // no weight decay on biases and norm parameters (dim <= 1)
  double sam_rho = 0.0;            // neighbourhood radius of SAM (Foret et al. 2021), >= 0; 0: off
  bool sam_adaptive = false;       // ASAM: the radius scaled elementwise by |w| (Kwon et al. 2021)
  void visit(Visitor& v) override;
};

struct SchedulerConfig : Section {
  std::string name = "constant";  // registered learning-rate schedule
  std::shared_ptr<Section> options;
  int64_t warmup_steps = 0;  // linear warm-up from 0 to lr, >= 0
  void visit(Visitor& v) override;
};

// The trainer's kinds (read from their YAML spellings, config.cpp's tables).
enum class BestMode { max, min };                // a higher / lower best_metric is better
enum class NonfiniteAction { abort, skip };      // on a NaN/Inf loss
enum class Precision { automatic, fp32, bf16 };  // auto: bf16 autocast on CUDA only
enum class UnevenData { pad, drop };             // rows that do not divide by the ranks
enum class PipelineSchedule { gpipe, one_f_one_b };
enum class PipelineBalance { params, time };
enum class Scenario { task_incremental, domain_incremental, class_incremental };
enum class EvalOn { automatic, test, val };
extern const Spellings<BestMode> kBestModes;
extern const Spellings<NonfiniteAction> kNonfiniteActions;
extern const Spellings<Precision> kPrecisions;
extern const Spellings<UnevenData> kUnevenData;
extern const Spellings<PipelineSchedule> kPipelineSchedules;
extern const Spellings<PipelineBalance> kPipelineBalances;
extern const Spellings<Scenario> kScenarios;
extern const Spellings<EvalOn> kEvalOn;

struct TrainerConfig : Section {
  std::string name = "standard";  // registered trainer
  std::shared_ptr<Section> options;
  int64_t epochs = 1;                    // passes over the training set, >= 0
  int64_t max_steps = 0;                 // stop after this many steps; 0: epochs decide
  int64_t log_every = 50;                // steps between log lines / metrics, >= 1
  int64_t eval_every = 0;                // steps between evaluations; 0: every epoch end
  double grad_clip_norm = 0.0;           // clip the global gradient norm; 0: off
  int64_t checkpoint_every = 0;          // steps between checkpoints; 0: every epoch end
  int64_t keep_checkpoints = 3;          // newest checkpoints kept (plus the best), >= 1
  std::string best_metric = "accuracy";  // validation metric that picks the best checkpoint
  BestMode best_mode = BestMode::max;    // max | min
  int64_t grad_accumulation = 1;         // micro-batches summed into one optimizer step, >= 1
  NonfiniteAction nonfinite = NonfiniteAction::abort;  // NaN/Inf loss: abort (error) | skip
  int64_t early_stopping = 0;            // stop after this many evals without a new best; 0: off
  Precision precision = Precision::automatic;  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  bool tensorboard = true;               // also write metrics as TensorBoard scalars
  bool final_train_eval = true;          // the end-of-run metrics also cover the training set
  void visit(Visitor& v) override;
  
};

// Pipeline parallelism (docs/pipeline.md): the model's blocks cut into `stages` processes; the
// world is stages x data-parallel replicas (rank r: stage r % stages of replica r / stages).
struct PipelineConfig : Section {
  int64_t stages = 1;              // processes one model replica is cut into; 1: off
  std::vector<std::string> cuts;   // block names or indices starting stages 2..n; empty: balance
  PipelineBalance balance = PipelineBalance::params;  // params | time: split when cuts is empty
  int64_t microbatches = 4;        // micro-batches each batch is cut into
  PipelineSchedule schedule = PipelineSchedule::one_f_one_b;  // gpipe | 1f1b
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

// Data-parallel training (docs/distributed.md); read when the process runs under torchrun,
// sculpt-run or SLURM with a world size (WORLD_SIZE etc.).
struct DistributedConfig : Section {
  std::string backend = "auto";        // auto (nccl on CUDA, gloo on CPU) | nccl | gloo
  double timeout_s = 300;              // a collective or the rendezvous waiting longer fails
  double bucket_cap_mb = 25;           // gradient bucket size (MiB) of the DDP reduction
  double first_bucket_mb = 1;          // the first bucket (the last gradients) is this small
  bool find_unused_parameters = false; // parameters without a gradient in a step are allowed
  std::string grad_compression = "none";  // none | bf16 | fp16: gradients travel in 16 bits
  UnevenData uneven_data = UnevenData::pad;  // pad (repeat rows) | drop: equal shards per rank
  bool verify_state = true;            // after training: ranks hold identical weights and state
  PipelineConfig pipeline;
  void visit(Visitor& v) override;
};

// One `overrides:` item of a pass: the layers it applies to and the pass's own keys for them
// (keys not written keep the pass's values).
struct LayerOverride : Section {
  std::string layers;                // regex over layer names ("fc2", "blocks\\.conv.*")
  std::shared_ptr<Section> options;  // a copy of the pass's options with this item's keys read
  void visit(Visitor& v) override;
};

// One step of the `compression:` recipe: a registered pass, the layers it acts on, its keys.
// The options of a pass that acts on the whole model (distill, replay, lwf), not on chosen
// layers: its item of `compression:` rejects the layer keys include, exclude, overrides, strict.
struct WholeModelOptions : Section {};

struct PassConfig : Section {
  std::string name;                    // registered pass
  std::shared_ptr<Section> options;    // the pass's own keys, beside `name`
  std::vector<std::string> include;    // layer-name regexes; empty: every compressible layer
  std::vector<std::string> exclude;    // layer-name regexes taken out of `include`
  bool strict = false;                 // a pattern that matches no layer is an error
  std::vector<LayerOverride> overrides;  // per-layer values of the pass's keys; first match wins
  void visit(Visitor& v) override;
  void check(Checker& c) const override;
};

// Continual learning (trainer.name: incremental). One item of `increments:`: the run's data (or
// another dataset) with a transform; the trainer trains on the increments in order.
struct PermutePixels : Section {
  int64_t seed = -1;  // permutes every sample's values with a fixed permutation; -1: off
  void visit(Visitor& v) override;
};

struct IncrementData : Section {
  std::string name;                  // registered dataset; empty: the run's `data:`
  std::shared_ptr<Section> options;  // the dataset's own keys, beside `name`
  void visit(Visitor& v) override;
};

struct IncrementConfig : Section {
  std::string name;               // label in reports; empty: "increment <i>"
  IncrementData data;             // another dataset (new documents); empty: the run's data
  std::vector<int64_t> classes;   // keep only samples of these labels (Split MNIST); empty: all
  PermutePixels permute_pixels;   // Permuted MNIST
  void visit(Visitor& v) override;
};

struct IncrementalConfig : Section {
  Scenario scenario = Scenario::domain_incremental;  // task_ | domain_ | class_incremental
  EvalOn eval_on = EvalOn::automatic;  // auto (test part if any, else val) | test | val
  std::string metric = "accuracy";  // the metric of the accuracy matrix
  std::string resume_from;          // an earlier incremental run to continue
  bool reset_optimizer = true;      // a fresh optimizer state at every increment
  bool versions = false;            // a model version after every increment (docs/versions.md)
  std::string versions_dir;         // the version store; empty: <run dir>/versions
  void visit(Visitor& v) override;
};

struct Config : Section {
  RunConfig run;
  LoggingConfig logging;
  DataConfig data;
  TokenizerConfig tokenizer;
  ModelConfig model;
  TaskConfig task;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  TrainerConfig trainer;
  DistributedConfig distributed;
  std::vector<PassConfig> compression;  // the recipe: passes in the order they act
  std::vector<std::string> plugins;     // shared libraries that register more passes
  IncrementalConfig incremental;         // continual learning: scenario, resume_from
  std::vector<IncrementConfig> increments;  // the data sequence of trainer.name: incremental
  ExportConfig exports;                      // `export:` at the end of training

  std::string source_file;  // the YAML file it came from (not a key)

  void visit(Visitor& v) override;
  void check(Checker& c) const override;

  // YAML file + `extends` + `key.path=value` overrides -> validated config. Throws ConfigError.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Validated config from YAML text (tests, tools); `name` labels errors.
  static Config parse(const std::string& yaml, const std::string& name = "<string>");
  std::string dump() const;  // resolved YAML; Config::parse(dump()) gives the same config
  std::string hash() const;  // FNV-1a 64 of dump() without run.resume; in checkpoints
};

}  // namespace sculpt::config
