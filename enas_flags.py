"""Every command-line flag of both entry scripts, defined once.

`define_flags(mode)` defines them; mode "search" (main_controller_child_trainer.py) or "final"
(main_child_trainer.py) only picks defaults where the original's two scripts differ. Names follow the
original code; flags that were dead there are not carried over (see the README).
This module imports no TensorFlow, so that `--help` answers at once (exit_if_help).

  FLAGS, print_user_flags()   the parsed flags; every flag of this run, sorted, as the original printed
  exit_if_help(mode, argv)    -h / --help / --helpshort / --helpfull: print the flags, exit 0
  check_flags(flags, mode)    one-line UserError for the first flag value that cannot work
  RANGES, CHOICES             every numeric flag's interval, every string flag's choices
  bounds, in_range            an interval of RANGES as numbers, and the test against it
"""
import re
import sys

from absl import flags as absl_flags

from errors import UserError

FLAGS = absl_flags.FLAGS
MIXED_PRECISION = ("none", "mixed_bfloat16", "mixed_float16")  # --mixed_precision (retraining)
RECOMPUTE = ("none", "sep_convs", "all")  # --child_recompute (retraining; micro_child.MicroChild)
HELP_ARGS = ("-h", "-help", "--help", "--helpshort", "--helpfull", "-?")
user_flags = []


def _recorded(define):
    """absl's define function that also records the flag's name for print_user_flags."""
    def define_and_record(name, default_value, doc_string):
        define(name, default_value, doc_string)
        user_flags.append(name)
    return define_and_record


DEFINE_string, DEFINE_integer, DEFINE_float, DEFINE_boolean = map(_recorded, (
    absl_flags.DEFINE_string, absl_flags.DEFINE_integer, absl_flags.DEFINE_float,
    absl_flags.DEFINE_boolean))


def print_user_flags(line_limit=80):
    """Prints every flag, sorted, padded with dots (the original's format)."""
    print("-" * 80)
    for flag_name in sorted(user_flags):
        value = "{}".format(getattr(FLAGS, flag_name))
        print(flag_name + "." * (line_limit - len(flag_name) - len(value)) + value)


def exit_if_help(mode, argv, usage):
    """If argv asks for help: prints usage and every flag of `mode` with its help text and
    default, then exits 0 (before TensorFlow is imported)."""
    if not any(a.split("=")[0] in HELP_ARGS for a in argv[1:]):
        return
    define_flags(mode)
    print(usage.strip() + "\n\nFlags, sorted (the data flags train_data_dir, val_data_dir, test_data_dir, "
          "channel, img_size and n_aug_img are the marked block at the top of enas_flags.py):")
    print(FLAGS.module_help(sys.modules[__name__]))
    sys.exit(0)


def define_flags(mode):
    search = mode == "search"
    # ============================== DATA: edit these defaults for your data set ==============================
    DEFINE_string("train_data_dir", "data/train", "Training images: one sub-folder per class.")
    DEFINE_string("val_data_dir", "data/valid", "Validation images, same class folders as train.")
    DEFINE_string("test_data_dir", "data/test", "Test images, same class folders as train.")
    DEFINE_integer("channel", None, "1 = read images as grayscale, 3 = as RGB colour; unset = 3 if the "
                   "first training images are colour, else 1.")
    DEFINE_integer("img_size", 16, "Images are resized to img_size x img_size pixels, a multiple of 4 "
                   "(16 suits the shipped 8x8 digits; the original used 32, for MNIST).")
    DEFINE_integer("n_aug_img", 1 if search else 3,
                   "Samples per training image per epoch: the original plus n_aug_img - 1 augmented "
                   "(1 = no augmentation; original defaults: 1 search, 3 final).")
    # =========================================================================================================
    _define_run_flags(search)
    _define_child_flags(search)
    if search:
        DEFINE_string("child_shared_init", "aligned",
                      "How the shared weight tables start: aligned (every row of a table one draw, "
                      "sep convs near the identity map; learns fastest), he (independent rows, each "
                      "conv with its own he_normal std sqrt(2 / (k*k*C_in)), as the retrained "
                      "child's convs) or authors (independent rows with std sqrt(2 / rows of the "
                      "table): the authors' he_normal on their 2-D tables).")
        _define_controller_flags()
        _define_cluster_flags()
    else:
        DEFINE_string("mixed_precision", "none",
                      "none, mixed_bfloat16 (CPU: TensorFlow's oneDNN bfloat16 rewrite; fast only "
                      "with AMX, slower than float32 on CPUs with only AVX-512 BF16) or "
                      "mixed_float16 (NVIDIA GPUs, with dynamic loss scaling). Variables and BN "
                      "statistics stay float32.")
        DEFINE_boolean("train_with_valid", False,
                       "Train on the train and valid folders together, with no validation pass (the "
                       "authors' final training: num_valids=0); test accuracy is still reported.")
        DEFINE_string("child_recompute", "none",
                      "What a training step recomputes in its backward pass instead of keeping in "
                      "memory: none; sep_convs (the activations inside each separable conv op); "
                      "all (besides, each 1x1 conv's and factorized reduction's in the cells). The "
                      "maths is the same; the README's memory table gives the cost in time.")
        DEFINE_boolean("export_only", False, "Only export output_dir's latest checkpoint as a SavedModel "
                                             "(output_dir/saved_model), then stop.")
        _define_cluster_flags()


def _define_run_flags(search):
    DEFINE_string("output_dir", "output/search" if search else "output/final",
                  "Checkpoints, logs and results; a rerun with the same folder resumes.")
    DEFINE_boolean("reset_output_dir", False,
                   "Delete output_dir's earlier outputs first (only files this program wrote).")
    DEFINE_string("data_format", "NHWC", "NHWC (CPU) or NCHW (GPU only).")
    DEFINE_integer("batch_size", 128, "Training batch size, also the reward batch (original: 128).")
    DEFINE_integer("num_epochs", 150 if search else 630,
                   "Epochs to train (original: 150 search, 630 final as in the authors' scripts).")
    DEFINE_integer("log_every", 50, "Print a training line every this many steps.")
    DEFINE_integer("eval_every_epochs", 1, "Evaluate on valid and test every this many epochs.")
    DEFINE_integer("seed", None, "Seed for TensorFlow and the data pipeline; unset = not reproducible.")
    DEFINE_boolean("skip_bad_images", False, "Skip unreadable image files (and count them) instead of stopping.")
    DEFINE_integer("num_threads", 0, "intra- and inter-op threads of the session; 0 = TensorFlow's choice.")


def _define_child_flags(search):
    DEFINE_integer("child_num_layers", 6 if search else 15, "Cells besides the 2 reductions (original: 6 / 15).")
    DEFINE_integer("child_num_cells", 5, "Nodes per cell, B (the arc has 8 * B integers).")
    DEFINE_integer("child_out_filters", 20 if search else 16,
                   "Channels of the first stage; doubled at each reduction (original: 20 / 16).")
    DEFINE_float("child_lr_max", 0.05, "Cosine LR: value at the start of each cycle.")
    DEFINE_float("child_lr_min", 0.0005 if search else 0.00001, "Cosine LR: value at the end of each cycle.")
    DEFINE_integer("child_lr_T_0", 10, "Cosine LR: length of the first cycle, in epochs.")
    DEFINE_integer("child_lr_T_mul", 2, "Cosine LR: each cycle is this many times longer than the last.")
    DEFINE_integer("child_cutout_size", None, "Side of the cutout square in pixels; unset = no cutout "
                                              "(the paper's CIFAR-10 final training: 16).")
    DEFINE_integer("child_random_crop_pad", 0, "Pad every training image with this many zero pixels per "
                                               "side, then crop a random img_size square (the authors' "
                                               "CIFAR-10 code: 4); 0 = off.")
    DEFINE_boolean("child_random_flip", False, "Flip every training image left-right with probability 0.5 "
                                               "(the authors' CIFAR-10 code; any channel count).")
    DEFINE_float("child_grad_bound", 5.0, "Clip the child gradients to this norm; 0 = no clipping.")
    DEFINE_string("child_clip_mode", "global", "global: clip all gradients together to child_grad_bound; "
                                               "norm: each tensor on its own (the authors' clip_mode).")
    DEFINE_float("child_keep_prob", 0.9 if search else 0.8, "Dropout keep probability before the classifier.")
    DEFINE_float("child_drop_path_keep_prob", 0.6, "Drop-path keep probability of the last cell at the "
                                                    "end of training (fixed arc only).")
    DEFINE_float("child_l2_reg", 1e-4 if search else 2e-4, "L2 weight decay (original: 1e-4 / 2e-4).")
    DEFINE_string("child_fixed_arc", None,
                  "The 8 * B integers of the normal then the reduction cell, or a file holding them.")
    DEFINE_boolean("child_use_aux_heads", True, "Add the auxiliary classifier (loss weight 0.4).")


def _define_controller_flags():
    DEFINE_float("controller_lr", 0.0035, "Adam learning rate of the controller.")
    DEFINE_float("controller_l2_reg", 0.0, "L2 weight decay of the controller.")
    DEFINE_float("controller_bl_dec", 0.99, "Decay of the moving-average reward baseline.")
    DEFINE_string("controller_baseline", "ema",
                  "ema: advantage = reward - its moving average (the original); loo: reward - the "
                  "mean reward of the update's other samples (leave-one-out, Kool et al. 2019; "
                  "needs controller_num_aggregate >= 2; the moving average is still logged).")
    DEFINE_boolean("controller_advantage_norm", True,
                   "Divide the advantage (reward - baseline) by its running root mean square "
                   "(decay controller_bl_dec), so that Adam's epsilon does not swamp advantages of "
                   "about 0.01; --nocontroller_advantage_norm = the original's raw advantage.")
    DEFINE_float("controller_tanh_constant", 1.10, "Logits are tanh_constant * tanh(logits).")
    DEFINE_float("controller_op_tanh_reduce", 2.5, "Op logits use tanh_constant / op_tanh_reduce.")
    DEFINE_float("controller_temperature", None, "Divide logits by this before tanh; unset = off.")
    DEFINE_float("controller_entropy_weight", 1e-4, "Reward bonus per unit of sample entropy.")
    DEFINE_integer("controller_reward_batch_size", None,
                   "Valid images in each sampled cell's reward (at most the valid set); unset = "
                   "--batch_size, the original's one batch.")
    DEFINE_integer("controller_reward_batch_from_epoch", None,
                   "Rewards count --batch_size images until this epoch's controller phase and "
                   "--controller_reward_batch_size from it on (a larger reward late in the search, "
                   "where the cells' differences are small); unset = the same size throughout.")
    DEFINE_boolean("controller_common_reward_batch", False,
                   "Score all the samples of a controller update on the same reward batch (common "
                   "random numbers: their rewards differ by their cells only); off = a batch per "
                   "sample, the original.")
    DEFINE_integer("controller_num_aggregate", 10, "Sampled architectures averaged per controller update.")
    DEFINE_integer("controller_train_steps", 30, "Controller updates per controller phase.")
    DEFINE_integer("controller_train_every", 1, "Train the controller every this many epochs.")
    DEFINE_integer("uniform_warmup_epochs", 0,
                   "Train the shared child on uniformly drawn cells, and the controller not at all, "
                   "for this many first epochs; 0 = the original (the controller's cells from the "
                   "start).")
    DEFINE_boolean("random_search", False,
                   "Baseline: draw every cell uniformly at random and never train the controller "
                   "(random search with weight sharing, Li & Talwalkar 2019); all else the same.")
    DEFINE_integer("controller_num_final_arcs", 10,
                   "At the end, sample this many architectures and score each on the whole valid set.")
    DEFINE_integer("final_train_top_k", 3,
                   "Then train at most this many of the --controller_num_final_arcs, the best by "
                   "shared-weight score, alone (the retraining's code at the search's child size) and "
                   "answer the best by valid accuracy (on a CIFAR-10 subset it chose better than the "
                   "shared score); 0 = answer the best by shared-weight score, the original.")
    DEFINE_integer("final_train_epochs", 5,
                   "Epochs each of the --final_train_top_k candidates trains alone (one cosine LR cycle; "
                   "on the shipped digits 1 epoch left cells near chance, 5 reached 0.98).")


def _define_cluster_flags():
    """Data-parallel search and retraining on several processes (cluster.py; README "Several
    machines")."""
    DEFINE_string("job_name", None, "ps or worker: this process's role in a cluster; unset = one process "
                                    "(or the role in TF_CONFIG).")
    DEFINE_integer("task_index", 0, "This process's index within its job; worker 0 is the chief.")
    DEFINE_string("ps_hosts", None, "Comma-separated host:port of the parameter servers.")
    DEFINE_string("worker_hosts", None, "Comma-separated host:port of the workers.")
    DEFINE_integer("child_num_aggregate", None, "Worker gradients averaged per update; unset = the number "
                                                "of workers (fewer makes the rest backup workers).")
    DEFINE_integer("sync_timeout_secs", 600, "Stop with an error when the cluster makes no progress, or a "
                                             "worker no step, for this many seconds.")


# Every numeric flag's allowed values but --channel's and --img_size's (_check_data_flags), in the
# order check_flags checks them: (flag, interval). An end that names a flag is that flag's value;
# NaN and infinities are outside every interval. A flag left unset (None: only a default can be) is
# not checked. Each stops a value that would fail late (--controller_bl_dec 1.5: a NaN baseline
# many steps on) or quietly do nothing useful (--controller_tanh_constant 0: uniform cells).
RANGES = (
    ("n_aug_img", "[1, inf)"), ("batch_size", "[1, inf)"), ("num_epochs", "[1, inf)"),
    ("log_every", "[1, inf)"), ("eval_every_epochs", "[1, inf)"), ("seed", "[0, 2147483647]"),
    ("num_threads", "[0, inf)"),
    ("child_num_layers", "[0, inf)"), ("child_num_cells", "[1, inf)"), ("child_out_filters", "[2, inf)"),
    ("child_lr_max", "(0, inf)"), ("child_lr_min", "[0, child_lr_max]"), ("child_lr_T_0", "[1, inf)"),
    ("child_lr_T_mul", "[1, inf)"), ("child_cutout_size", "[1, inf)"), ("child_random_crop_pad", "[0, inf)"),
    ("child_grad_bound", "[0, inf)"), ("child_keep_prob", "(0, 1]"), ("child_drop_path_keep_prob", "(0, 1]"),
    ("child_l2_reg", "[0, inf)"),
    ("controller_lr", "(0, inf)"), ("controller_l2_reg", "[0, inf)"), ("controller_bl_dec", "[0, 1)"),
    ("controller_tanh_constant", "(0, inf)"), ("controller_op_tanh_reduce", "(0, inf)"),
    ("controller_temperature", "(0, inf)"), ("controller_entropy_weight", "[0, inf)"),
    ("controller_reward_batch_size", "[1, inf)"), ("controller_reward_batch_from_epoch", "[1, num_epochs]"),
    ("controller_num_aggregate", "[1, inf)"),
    ("controller_train_steps", "[1, inf)"), ("controller_train_every", "[1, inf)"),
    ("uniform_warmup_epochs", "[0, num_epochs)"), ("controller_num_final_arcs", "[1, inf)"),
    ("final_train_top_k", "[0, inf)"), ("final_train_epochs", "[1, inf)"),
    ("task_index", "[0, inf)"), ("child_num_aggregate", "[1, inf)"), ("sync_timeout_secs", "[1, inf)"),
)
# The string flags' allowed values: (flag, choices).
CHOICES = (("data_format", ("NHWC", "NCHW")), ("child_clip_mode", ("global", "norm")),
           ("child_shared_init", ("aligned", "he", "authors")), ("mixed_precision", MIXED_PRECISION),
           ("child_recompute", RECOMPUTE), ("controller_baseline", ("ema", "loo")))
_INTERVAL = re.compile(r"([\[(])(\w+), (\w+)([\])])")


def bounds(flags, interval):
    """An interval of RANGES as numbers: (low, low included, high, high included)."""
    left, low, high, right = _INTERVAL.fullmatch(interval).groups()
    low, high = (getattr(flags, end) if hasattr(flags, end) else float(end) for end in (low, high))
    return low, left == "[", high, right == "]"


def in_range(value, low, low_included, high, high_included):
    """Whether value lies in the interval (see bounds); never for NaN."""
    return ((value >= low if low_included else value > low) and
            (value <= high if high_included else value < high))


def _expected(flags, interval):
    """What a value of interval must be, for an error: '>= 1', 'in [0, 1)',
    'in [0, --num_epochs) = [0, 5)'."""
    left, low, high, _ = _INTERVAL.fullmatch(interval).groups()
    if high == "inf":
        return "{} {}".format(">=" if left == "[" else ">", low)
    named = re.sub(r"[a-z]\w*", lambda m: "--" + m.group(), interval)
    valued = re.sub(r"[a-z]\w*", lambda m: str(getattr(flags, m.group())), interval)
    return "in " + interval if named == interval else "in {} = {}".format(named, valued)


def check_flags(flags, mode):
    """Raises UserError naming the first flag whose value cannot work; mode "search" or "final";
    flags: the parsed FLAGS or any object with their attributes (a flag of the other mode absent).

    The one place flag values are checked: _check_data_flags, then RANGES and CHOICES. What they
    point to is checked where it is read: the data folders, images and the batch against the
    training set in data_utils.read_data, an arc string or file in search_space.parse_arc, the
    cluster's hosts (which may come from TF_CONFIG instead) and --child_num_aggregate and
    --task_index against their number in cluster.from_flags.
    """
    _check_data_flags(flags.channel, flags.img_size)
    for name, interval in RANGES:
        value = getattr(flags, name, None)
        if value is not None and not in_range(value, *bounds(flags, interval)):
            raise UserError("--{} must be {}, got {}".format(name, _expected(flags, interval), value))
    for name, choices in CHOICES:
        if getattr(flags, name, choices[0]) not in choices:
            raise UserError("--{} must be {}, got {}".format(
                name, ", ".join(choices[:-1]) + " or " + choices[-1], getattr(flags, name)))
    if flags.child_out_filters % 2:
        raise UserError("--child_out_filters must be even (factorized reduction halves it), got {}"
                        .format(flags.child_out_filters))
    if getattr(flags, "controller_baseline", None) == "loo" and flags.controller_num_aggregate < 2:
        raise UserError("--controller_baseline loo needs --controller_num_aggregate >= 2 (the other "
                        "samples of an update), got {}".format(flags.controller_num_aggregate))
    if getattr(flags, "controller_reward_batch_from_epoch", None) and not flags.controller_reward_batch_size:
        raise UserError("--controller_reward_batch_size must be given with --controller_reward_batch_from_epoch "
                        "(the reward's images from that epoch on)")
    if mode == "search" and flags.child_fixed_arc:
        raise UserError("--child_fixed_arc is for main_child_trainer.py; the search samples arcs")
    if mode != "search" and not flags.child_fixed_arc:
        raise UserError("--child_fixed_arc is required: the {} integers of a cell string, or a file "
                        "holding them (e.g. output/search/best_arc.txt)".format(8 * flags.child_num_cells))


def _check_data_flags(channel, img_size):
    """UserError for bad --channel or --img_size values (None: --channel not given)."""
    if channel not in (None, 1, 3):
        raise UserError("--channel must be 1 or 3 (or not given: read from the data), got %r" % (channel,))
    if not isinstance(img_size, int) or img_size <= 0 or img_size % 4:
        raise UserError("--img_size must be a positive multiple of 4, got %r" % (img_size,))
