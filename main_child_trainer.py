"""Retrains a fixed cell string from scratch (final training).

    python main_child_trainer.py --child_fixed_arc "1 2 1 3 ..." [--flags]
    python main_child_trainer.py --child_fixed_arc output/search/best_arc.txt
"""
import trainer

if __name__ == "__main__":
    trainer.main("final")
