FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-fund --no-audit
COPY . .
ENV REFEED_DATA_DIR=/data
RUN mkdir -p /data && chown node:node /data
EXPOSE 1883 8080
USER node
CMD ["node", "bin/refeed.js", "start"]
