"""The controller's reward: the images a sampled cell is scored on, the keys of its draws, and
what the controller is rewarded with. Change the reward here.

Every random draw of a search is keyed: a key (kind, index) says what the draw is for, and the
cell the sampler draws in a run and the valid images a reward is counted on are functions of
(the search's cell_seed, key), so that a resumed run draws what the run never stopped drew, and
a cluster's workers draw alike without a message.

API
  CONTROLLER_KIND, EPOCH_SAMPLE_KIND, EVAL_KIND, FINAL_KIND, UNIFORM_FINAL_KIND, UPDATE_BATCH_KIND,
  UNFED_KIND                       what a key's draw is for
  sample_key_of(kind, index)       -> the key, int64 [2]
  controller_keys(run, update, common, task_index=0) -> (cell key, batch key) of a controller sample
  reward_batch(data, batch_size, seed, key) -> the numpy (images, labels) of a key's reward batch
  RewardBatches(data, batch_size, cell_seed, late=None, global_step=None)
                                   a search's reward batches (graph.Graph.reward_batches)
  feed(sess, g, key=None, batch_key=None)   the feed_dict that scores key's cell on a reward batch
  controller_reward(accuracy, sample_entropy, entropy_weight) -> the controller's reward tensor
  build(g, flags, data)            a search's reward batches, sampled_valid_acc and reward
"""
import numpy as np
import tensorflow.compat.v1 as tf

import data_utils

# sample_key kinds (below 16: graph._build_sampler seeds a cell with cell_seed * 16 + kind).
# UPDATE_BATCH_KIND keys only the reward batch a controller update's samples share.
CONTROLLER_KIND, EPOCH_SAMPLE_KIND, EVAL_KIND, FINAL_KIND, UNIFORM_FINAL_KIND, UPDATE_BATCH_KIND = 1, 2, 3, 4, 5, 6
UNFED_KIND = 15  # a run that fed no key: a random one (bench scripts, graph's default)
WORKER_SHIFT = 40  # a cluster worker t numbers its controller samples from t << WORKER_SHIFT


def sample_key_of(kind, index):
    """The sample_key [kind, index] of a draw (int64 values)."""
    return np.array([kind, index], np.int64)


def controller_keys(run, update, common, task_index=0):
    """(cell key, batch key) of a controller sample, int64 [2] each.

    run: the sample's number in this process (one process: over the whole search, update u's
    k-th sample being u * controller_num_aggregate + k, so that a resumed phase redraws its
    samples; a cluster's worker t > 0 counts its own from t << WORKER_SHIFT, apart from the
    others', and is exact only with the seed, not across a resume); update: the controller
    update the sample belongs to. The cell is keyed by the sample; the reward batch by the
    sample too, or with common (--controller_common_reward_batch) by the update, one batch for
    all its samples: common random numbers, so that their rewards differ by their cells alone.
    """
    key = sample_key_of(CONTROLLER_KIND, (task_index << WORKER_SHIFT) + run)
    return key, sample_key_of(UPDATE_BATCH_KIND, update) if common else key


def reward_batch(data, batch_size, seed, key):
    """The reward batch of key (int64 [2], sample_key_of): min(batch_size, N_valid) distinct
    valid images drawn from (seed, key), not augmented, as numpy arrays (float32 [B,H,W,C]
    normalised, int32 [B]). It is fed straight to the eval graph (feed): one batch per
    controller sample, with no tf.data iterator to restart for each."""
    n = len(data["labels"]["valid"])
    rng = np.random.default_rng([int(seed) % (1 << 63), *map(int, key)])
    return data_utils.images_at(data, "valid", rng.choice(n, min(batch_size, n), replace=False))


class RewardBatches(object):
    """A search's reward batches: batch_size (int, at most N_valid) valid images per key, drawn
    from (the search's cell_seed, key). cell_seed (int64 [] variable) is checkpointed and the
    chief's on a cluster, so that every process and a resumed run draw the same batch for a key.
    late: (size, step): from global step `step` on (global_step, int64 [] variable: the phase of
    epoch E runs at step E * steps per epoch, on every process), batches hold `size` images
    instead; None: batch_size throughout."""

    def __init__(self, data, batch_size, cell_seed, late=None, global_step=None):
        self.data, self.batch_size, self.cell_seed = data, batch_size, cell_seed
        self.late, self.global_step = late, global_step
        self._seed = None  # (session, cell_seed's value in it)

    def size(self, sess):
        """The images (int) of a reward batch drawn now in sess."""
        if self.late is None or int(sess.run(self.global_step)) < self.late[1]:
            return self.batch_size
        return self.late[0]

    def __call__(self, sess, key):
        """(images float32 [B,H,W,C], labels int32 [B]) of key in sess (reads cell_seed once)."""
        if self._seed is None or self._seed[0] is not sess:
            self._seed = (sess, int(sess.run(self.cell_seed)))
        return reward_batch(self.data, self.size(sess), self._seed[1], key)


def feed(sess, g, key=None, batch_key=None):
    """The feed_dict of a run that scores the sampler's cell of key (sample_key_of(...); None: a
    random UNFED_KIND key) on the reward batch of batch_key (None: key's own): the batch in place
    of the eval iterator's output, and key as g.sample_key. g: a search's graph.Graph in sess."""
    if key is None:
        key = sample_key_of(UNFED_KIND, np.random.randint(1 << 40))
    images, labels = g.reward_batches(sess, key if batch_key is None else batch_key)
    return {g.eval_images: images, g.eval_labels: labels, g.sample_key: key}


def controller_reward(accuracy, sample_entropy, entropy_weight):
    """The controller's reward, float32 []: a sampled cell's accuracy (float32 []) on its reward
    batch, plus entropy_weight (None: 0) times the sample's entropy (the original's bonus for
    uncertain samples)."""
    if entropy_weight is None:
        return accuracy
    return accuracy + entropy_weight * sample_entropy


def build(g, flags, data):
    """A search's reward, once g holds its eval graph (g.eval_correct, g.eval_count: the eval
    arc's correct predictions and examples in a fed batch), controller, cell_seed, global_step
    and num_train_batches. Sets g.reward_batches (a RewardBatches of controller_reward_batch_size
    images, unset: batch_size; with controller_reward_batch_from_epoch E, batch_size images
    before epoch E's controller phase and controller_reward_batch_size from it on) and
    g.sampled_valid_acc (float32 []: the eval arc's accuracy on the fed batch). Returns the
    controller's reward (controller_reward)."""
    num_valid = len(data["labels"]["valid"])
    size = min(flags.controller_reward_batch_size or flags.batch_size, num_valid)
    from_epoch = flags.controller_reward_batch_from_epoch
    if from_epoch is None:
        g.reward_batches = RewardBatches(data, size, g.cell_seed)
    else:
        g.reward_batches = RewardBatches(data, min(flags.batch_size, num_valid), g.cell_seed,
                                         late=(size, from_epoch * g.num_train_batches), global_step=g.global_step)
    g.sampled_valid_acc = tf.cast(g.eval_correct, tf.float32) / tf.cast(g.eval_count, tf.float32)
    return controller_reward(g.sampled_valid_acc, g.controller.sample_entropy, flags.controller_entropy_weight)
