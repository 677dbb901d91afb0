# leakscan as a container image: the secret gate for CI without installing Python.
#
#   docker build -t leakscan .
#   # an image in the local daemon (the socket's group, as the image runs as a non-root user)
#   docker run --rm --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock leakscan myapp:latest
#   # a `docker save` tar
#   docker run --rm -v "$PWD/myapp.tar:/scan/myapp.tar:ro" leakscan /scan/myapp.tar
#
# The rule catalog is compiled here, at build time (3-4 s of CPU a scan would otherwise pay):
# the wheel pip builds carries it compiled (build_catalog.py), and `leakscan warm-up` puts it
# in the user's rules folder (compiling it there if the build had no kingfisher), in the image
# itself, not in the /cache volume: a bind-mounted volume would hide it.
# The result store lives on the /cache volume: mount one to keep it between runs.

# any Python >= 3.11 image with pip; the tests build with a local one (no network there)
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# extra pip options, e.g. "--no-index --find-links=/wheels" for an offline build
ARG PIP_OPTIONS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

COPY pyproject.toml README.md MANIFEST.in build_catalog.py /src/
COPY leakscan /src/leakscan
# /src removed in the same step: the build tree never reaches a layer. pip compiles the
# bytecode as it installs (the non-root user could not write it at run time)
RUN python -m pip install --root-user-action=ignore ${PIP_OPTIONS} /src && rm -rf /src

# a non-root user written into passwd directly: slim (Debian), Alpine and busybox bases alike
RUN echo "leakscan:x:10001:10001:leakscan:/home/leakscan:/sbin/nologin" >> /etc/passwd \
 && echo "leakscan:x:10001:" >> /etc/group \
 && mkdir -p /home/leakscan /cache \
 && chown 10001:10001 /home/leakscan /cache \
 && chmod 700 /home/leakscan

USER 10001:10001
# KF_RULE_CACHE_DIR: where kingfisher (and leakscan) keep the compiled catalog. kingfisher
# reads it only from a folder the running user owns: run as this user (the default)
ENV HOME=/home/leakscan LEAKSCAN_CACHE_DIR=/cache KF_RULE_CACHE_DIR=/home/leakscan/rules
RUN leakscan warm-up && leakscan --version

VOLUME /cache
WORKDIR /scan
ENTRYPOINT ["leakscan"]
CMD ["--help"]
