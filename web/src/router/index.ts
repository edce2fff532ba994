import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useAuth } from '../stores/auth'
import { i18n } from '../i18n'

const MainLayout = () => import('../layouts/MainLayout.vue')

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('../views/LoginView.vue'), meta: { public: true } },
  {
    path: '/',
    component: MainLayout,
    children: [
      { path: '', name: 'home', redirect: () => useAuth().home },
      { path: 'overview', name: 'overview', component: () => import('../views/OverviewView.vue') },
      { path: 'my-enterprise', name: 'myEnterprise', redirect: () => `/enterprises/${useAuth().ownEnterprise ?? ''}` },
      { path: 'enterprises', name: 'enterprises', component: () => import('../views/EnterprisesView.vue') },
      {
        path: 'enterprises/:id',
        name: 'enterprise',
        component: () => import('../views/EnterpriseView.vue'),
        props: true,
      },
      { path: 'alarms', name: 'alarms', component: () => import('../views/AlarmsView.vue') },
      { path: 'alarms/:id', name: 'alarm', component: () => import('../views/AlarmView.vue'), props: true },
      { path: 'filings', name: 'filings', component: () => import('../views/FilingsView.vue') },
      { path: 'quality', name: 'quality', component: () => import('../views/QualityView.vue') },
      { path: 'devices', name: 'devices', component: () => import('../views/DevicesView.vue') },
      { path: 'plans', name: 'plans', component: () => import('../views/PlansView.vue') },
      { path: 'reports', name: 'reports', component: () => import('../views/ReportsView.vue') },
      { path: 'desk/incidents', name: 'incidents', component: () => import('../views/desk/IncidentsView.vue') },
      { path: 'desk/incidents/:id', name: 'incident', component: () => import('../views/desk/IncidentView.vue'), props: true },
      { path: 'desk/requests', name: 'requests', component: () => import('../views/desk/RequestsView.vue') },
      { path: 'desk/requests/:id', name: 'request', component: () => import('../views/desk/RequestView.vue'), props: true },
      { path: 'desk/kb', name: 'knowledge', component: () => import('../views/desk/KnowledgeView.vue') },
      { path: 'desk/kb/:id', name: 'article', component: () => import('../views/desk/ArticleView.vue'), props: true },
      { path: 'desk/abnormal-events', name: 'abnormal', component: () => import('../views/desk/AbnormalReportsView.vue') },
      { path: 'desk/duty', name: 'duty', component: () => import('../views/desk/DutyView.vue') },
      { path: 'account', name: 'account', component: () => import('../views/AccountView.vue') },
      { path: 'admin/users', name: 'users', component: () => import('../views/admin/UsersView.vue') },
      { path: 'admin/api-keys', name: 'apiKeys', component: () => import('../views/admin/ApiKeysView.vue') },
      { path: 'admin/audit', name: 'audit', component: () => import('../views/admin/AuditView.vue') },
      { path: 'admin/security', name: 'security', component: () => import('../views/admin/SecurityView.vue') },
      { path: 'admin/rules', name: 'rules', component: () => import('../views/admin/RulesView.vue') },
      { path: 'admin/status', name: 'status', component: () => import('../views/admin/StatusView.vue') },
      { path: ':rest(.*)*', name: 'notFound', component: () => import('../views/NotFoundView.vue') },
    ],
  },
]

export const router = createRouter({ history: createWebHistory(), routes })

router.beforeEach(async (to) => {
  const auth = useAuth()
  if (!auth.restored) await auth.restore()
  if (to.meta.public) return auth.loggedIn && to.name === 'login' ? auth.home : true
  if (!auth.loggedIn) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (typeof to.name === 'string' && !auth.may(to.name)) return { name: 'notFound', params: { rest: ['forbidden'] } }
  return true
})

router.afterEach((to) => {
  const name = typeof to.name === 'string' ? to.name : ''
  const key = `menu.${name}`
  const title = i18n.global.te(key) ? i18n.global.t(key) : ''
  document.title = `${title ? `${title} · ` : ''}${i18n.global.t('app.title')}`
})
