"""The file names of the figures a training run leaves in its output folder.

Apart from `plots.py`, so that what only needs the names (the model card, a push) does not import matplotlib.
"""

HISTORY_PLOT = "training_history.png"
CONFUSION_PLOT = "confusion_matrix.png"
ATTENTION_PLOT = "attention.png"
CALIBRATION_PLOT = "calibration.png"
LABEL_F1_PLOT = "label_f1.png"
PLOT_FILES = (HISTORY_PLOT, CONFUSION_PLOT, LABEL_F1_PLOT, ATTENTION_PLOT, CALIBRATION_PLOT)
