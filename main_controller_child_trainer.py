"""ENAS micro search: the controller samples cells, the shared-weight child trains on them.

    python main_controller_child_trainer.py [--flags]

Ends by writing output_dir/best_arc.txt and printing the command that retrains it.
"""
import trainer

if __name__ == "__main__":
    trainer.main("search")
