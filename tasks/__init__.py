"""The tasks the shipped models are trained on, in the form that both the pretraining script and
the demos read: an application of tinytorch that neither of them owns."""
