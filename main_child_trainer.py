"""Retrains a fixed cell string from scratch (final training).

    python main_child_trainer.py --child_fixed_arc "1 2 1 3 ..." [--flags]
    python main_child_trainer.py --child_fixed_arc output/search/best_arc.txt
"""
import sys

import enas_flags

if __name__ == "__main__":
    enas_flags.exit_if_help("final", sys.argv, __doc__)  # before TensorFlow is imported
    import trainer
    trainer.main("final")
