#!/usr/bin/env python
"""Django's command-line utility for the admin project."""
import os
import sys
from pathlib import Path


def main():
    # Run from anywhere: the repository root (not this folder) goes first on sys.path.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "admin_project.settings.local")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
