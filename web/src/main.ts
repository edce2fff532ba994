import { createApp } from 'vue'
import { createPinia } from 'pinia'
import ElementPlus from 'element-plus'
import 'element-plus/dist/index.css'
import * as Icons from './icons'
import App from './App.vue'
import { router } from './router'
import { i18n } from './i18n'
import { useAuth } from './stores/auth'
import './styles.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
useAuth().install()
app.use(i18n)
app.use(ElementPlus)
for (const [name, component] of Object.entries(Icons)) app.component(name, component)
app.use(router)
app.mount('#app')
