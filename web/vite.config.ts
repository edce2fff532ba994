/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The gateway serves the build (dist/) at `/`; `npm run dev` proxies the API to a running
// `make run` (ECOWATT_HTTP_PORT, 8000 by default) so that cookies stay same-origin.
const gateway = `http://127.0.0.1:${process.env.ECOWATT_HTTP_PORT ?? '8000'}`

export default defineConfig({
  plugins: [vue()],
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
