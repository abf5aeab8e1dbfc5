"""ENAS micro search: the controller samples cells, the shared-weight child trains on them.

    python main_controller_child_trainer.py [--flags]

Ends by writing output_dir/best_arc.txt and printing the command that retrains it.
"""
import sys

import enas_flags

if __name__ == "__main__":
    enas_flags.exit_if_help("search", sys.argv, __doc__)  # before TensorFlow is imported
    import trainer
    trainer.main("search")
