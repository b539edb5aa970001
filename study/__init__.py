"""Multi-seed studies (`python -m study`): arms x seeds as ordinary search/retrain run
directories, and a report of their statistics (study.json, study.md, accuracy_vs_params.png)."""
