# The scoring image: `python -m scoring run` as the entrypoint. It is the CI environment: Debian bookworm
# with the very Debian packages `make setup` installs on every development and CI machine (one pinned list,
# apt-packages.txt: R 4.2.2, r-cran-forecast 8.20, ..., Python 3.11), and the same pinned Python wheels.
# tests/test_image.py fails when this file, apt-packages.txt, the requirements or the machines drift apart,
# and when scoring/ needs a newer Python than this image has. Installed size: see README "Scoring image".
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RPY2_CFFI_MODE=ABI

COPY apt-packages.txt /tmp/apt-packages.txt
RUN apt-get update \
 && grep -v '^\s*#' /tmp/apt-packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/apt-packages.txt

# rpy2 in ABI mode (RPY2_CFFI_MODE above, as in `make setup`): no compiler and no R headers needed.
COPY scoring/requirements.txt /opt/scoring/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r /opt/scoring/requirements.txt

COPY scoring /opt/app/scoring

# The package list the Functions app checks each model version against (app setting IMAGE_R_PACKAGES).
RUN Rscript -e 'ip <- installed.packages()[, c("Package", "Version")]; cat(paste(ip[, 1], ip[, 2], sep = "=", collapse = ";"))' \
      > /opt/app/r-packages.txt

RUN useradd --system --uid 10001 --home-dir /home/scoring --create-home scoring
USER scoring
WORKDIR /opt/app
ENV PATH=/opt/venv/bin:$PATH

ENTRYPOINT ["python", "-m", "scoring"]
CMD ["run"]
