# The scoring image: `python -m scoring run` as the entrypoint. R is pinned to the version we develop and
# test on (Debian bookworm's 4.2.2), so development and production score identically.
# tests/test_pins.py fails when this file and the requirements drift apart.
FROM rocker/r-ver:4.2.2

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Python for rpy2, and the R packages the sample models need (forecast for ets; data.table, jsonlite for I/O).
# rocker/r-ver pins its CRAN snapshot to the R release date, so these resolve to versions of that time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libffi-dev \
 && rm -rf /var/lib/apt/lists/* \
 && install2.r --error --skipinstalled forecast data.table jsonlite

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
