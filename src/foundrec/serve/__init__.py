"""Real-time serving: bundle export/load, ANN index, event store, the recommend pipeline, the HTTP app.

Nothing here imports training code (`foundrec.train`, `foundrec.experiment`): a bundle folder and the
model definitions are enough to serve.
"""
