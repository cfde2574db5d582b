"""Azure Container Instances: the client (aci.client), its errors (aci.errors) and the group spec (aci.spec)."""
