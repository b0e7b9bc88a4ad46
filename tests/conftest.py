import sys
from pathlib import Path

# test helpers (onnx_cases.py, zoo.py) import as top-level modules under --import-mode=importlib
sys.path.insert(0, str(Path(__file__).parent))
