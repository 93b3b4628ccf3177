"""Deploying a finished run's technique: load it as it answered in the run (loader), export it as a
deployable artifact (export), serve it behind an OpenAI-compatible endpoint (server), and measure that
endpoint under concurrent load (loadtest). docs/deploy.md describes the commands."""
