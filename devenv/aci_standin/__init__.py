"""A loopback HTTPS stand-in for the ARM containerGroups API (Azure Container Instances).

Development and tests only: production code never imports it. It speaks enough of api-version
2023-05-01 for azure-mgmt-containerinstance to create, watch, read logs of, stop and delete container
groups; each group's one container runs as a local process instead of a container.

Run it with `python -m devenv.aci_standin --state-dir DIR`, or from Python with
`devenv.aci_standin.control.start_standin(DIR)`.
"""
