"""Infrastructure as code (Bicep) and the deploy script; see infra/README.md."""
