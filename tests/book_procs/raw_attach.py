"""Attach with a plain SharedMemory(name) and exit: the tracker trap."""
import sys
from multiprocessing.shared_memory import SharedMemory

SharedMemory(sys.argv[1]).close()
