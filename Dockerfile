# Image of the wmss workers (docker-compose.yml: wmss-control, wmss-gpu) and the wmss CLI.
# Node 20 runs the TypeScript workers; a Python venv from kernels/requirements.txt runs the kernels.
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY pipeline pipeline
COPY steps steps
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY client client
COPY bench bench
COPY test test
COPY scripts scripts
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM node:20.20.2-bookworm-slim
# gcc and the Python headers: torch.compile (training compiles each transformer block on CUDA)
# builds Triton's launcher with them at run time
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY kernels/requirements.txt kernels/requirements.txt
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir -r kernels/requirements.txt
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY bin bin
COPY kernels kernels
COPY data data
RUN ln -s /app/bin/wmss /usr/local/bin/wmss
ENV NODE_ENV=production
ENTRYPOINT ["node", "dist/client/cli.js"]
CMD ["worker", "control"]
