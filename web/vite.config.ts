/// <reference types="vitest/config" />
import { defineConfig, type Plugin } from 'vite'
import vue from '@vitejs/plugin-vue'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'

// The gateway sends `<file>.gz` to browsers that accept gzip: compress once at build time.
function precompress(): Plugin {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name)
      return statSync(path).isDirectory() ? walk(path) : [path]
    })
  return {
    name: 'ecowatt-precompress',
    apply: 'build',
    closeBundle() {
      for (const file of walk('dist')) {
        if (!/\.(js|css|html|json|svg|txt)$/.test(file)) continue
        const data = readFileSync(file)
        if (data.length < 1024) continue
        writeFileSync(`${file}.gz`, gzipSync(data, { level: 9 }))
      }
    },
  }
}

// The gateway serves the build (dist/) at `/`; `npm run dev` proxies the API to a running
// `make run` (ECOWATT_HTTP_PORT, 8000 by default) so that cookies stay same-origin.
const gateway = `http://127.0.0.1:${process.env.ECOWATT_HTTP_PORT ?? '8000'}`

export default defineConfig({
  plugins: [vue(), precompress()],
  build: {
    target: 'es2020',
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      output: {
        // Stable vendor chunks: a change of the application does not invalidate them.
        manualChunks(id: string) {
          if (!id.includes('node_modules')) return undefined
          if (id.includes('echarts') || id.includes('zrender')) return 'echarts'
          if (id.includes('element-plus') || id.includes('@element-plus')) return 'element-plus'
          return 'vendor'
        },
      },
    },
  },
  server: {
    proxy: { '/api': { target: gateway, changeOrigin: false } },
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.test.ts'],
  },
})
