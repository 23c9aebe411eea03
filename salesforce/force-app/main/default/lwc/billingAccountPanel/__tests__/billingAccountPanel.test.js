import { createElement } from 'lwc';
import BillingAccountPanel from 'c/billingAccountPanel';
import { getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';

const record = (id, fields) => ({
    id,
    fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { value: v, displayValue: null }]))
});
const list = (records) => ({ records, count: records.length });
const emitList = (relatedListId, records) =>
    getRelatedListRecords.emit(list(records), (config) => config.relatedListId === relatedListId);
const flush = () => Promise.resolve().then(() => Promise.resolve());
const text = (element, id) => element.shadowRoot.querySelector(`[data-id="${id}"]`)?.textContent.trim();

// Mounted, with its wires configured (a wire's configuration arrives after a tick).
async function mount() {
    const element = createElement('c-billing-account-panel', { is: BillingAccountPanel });
    element.recordId = '001000000000001AAA';
    document.body.appendChild(element);
    await flush();
    return element;
}

afterEach(() => {
    while (document.body.firstChild) {
        document.body.removeChild(document.body.firstChild);
    }
    jest.clearAllMocks();
});

describe('c-billing-account-panel', () => {
    it('shows the status, MRR, ARR, balance, subscriptions and a timeline newest first', async () => {
        const element = await mount();
        getRecord.emit(record('001000000000001AAA', {
            Billing_Status__c: 'cancelling', Billing_Ends_On__c: '2026-12-31', MRR__c: 2645, ARR__c: 31740,
            Balance__c: 3174, CurrencyIsoCode: 'EUR', Billing_Review_Flag__c: false, Billing_Review_Reason__c: null
        }));
        emitList('Billsync_Subscriptions__r', [record('a10000000000001AAA', {
            Name: 'sub-0065g00000AbCdEAAA', Status__c: 'cancelling', Ends_On__c: '2026-12-31',
            Start_Date__c: '2026-01-01', MRR__c: 2645, Next_Invoice_Date__c: '2026-08-01', CurrencyIsoCode: 'EUR'
        })]);
        emitList('Invoices__r', [
            record('a00000000000001AAA', { Name: 'INV-2026-000001', Issue_Date__c: '2026-06-01', Due_Date__c: '2026-07-01',
                Total__c: 3174, Balance__c: 0, Status__c: 'paid', CurrencyIsoCode: 'EUR' }),
            record('a00000000000002AAA', { Name: 'INV-2026-000002', Issue_Date__c: '2026-07-01', Due_Date__c: '2026-07-31',
                Total__c: 3174, Balance__c: 3174, Status__c: 'open', CurrencyIsoCode: 'EUR' })
        ]);
        emitList('Payments__r', [record('a02000000000001AAA', {
            Name: 'PAY-7', Payment_Date__c: '2026-06-15', Amount__c: 3174, Status__c: 'succeeded', CurrencyIsoCode: 'EUR'
        })]);
        emitList('Credit_Notes__r', [record('a04000000000001AAA', {
            Name: 'CN-2026-000001', Issue_Date__c: '2026-06-20', Total__c: 120, Reason__c: 'service outage',
            CurrencyIsoCode: 'EUR'
        })]);
        await flush();

        expect(text(element, 'status')).toBe('Cancelling: billed and served until 2026-12-31');
        expect(text(element, 'mrr')).toBe('2,645.00 EUR');
        expect(text(element, 'arr')).toBe('31,740.00 EUR');
        expect(text(element, 'balance')).toBe('3,174.00 EUR');
        expect(text(element, 'subscriptions')).toContain('sub-0065g00000AbCdEAAA: Cancelling until 2026-12-31');
        const events = [...element.shadowRoot.querySelectorAll('[data-id="event"]')].map((e) =>
            [...e.querySelectorAll('span')].map((s) => s.textContent).join(' '));
        expect(events).toEqual([
            '2026-12-31 Subscription sub-0065g00000AbCdEAAA ends (last day billed)',
            '2026-07-01 Invoice INV-2026-000002: 3,174.00 EUR, 3,174.00 EUR due 2026-07-31',
            '2026-06-20 Credit note CN-2026-000001: 120.00 EUR (service outage)',
            '2026-06-15 Payment PAY-7: 3,174.00 EUR',
            '2026-06-01 Invoice INV-2026-000001: 3,174.00 EUR, paid',
            '2026-01-01 Subscription sub-0065g00000AbCdEAAA started'
        ]);
        expect(element.shadowRoot.querySelector('[data-id="empty"]')).toBeNull();
    });

    it('shows the churn risk with its level and its three reasons, and nothing of it when not scored', async () => {
        const element = await mount();
        getRecord.emit(record('001000000000001AAA', {
            Billing_Status__c: 'active', MRR__c: 500, ARR__c: 6000, Balance__c: 0, CurrencyIsoCode: 'EUR',
            Billing_Review_Flag__c: false, Churn_Risk__c: 82,
            Churn_Risk_Reasons__c: 'MRR fell 40 % in three months; 2 seat reductions or removed items in six months; '
                + 'an invoice overdue by 45 days'
        }));
        await flush();

        expect(text(element, 'churn-risk')).toBe('82 / 100 (high)');
        expect(element.shadowRoot.querySelector('[data-id="churn-risk"]').className).toContain('slds-theme_error');
        const reasons = [...element.shadowRoot.querySelectorAll('[data-id="churn-reason"]')].map((e) => e.textContent);
        expect(reasons).toEqual(['MRR fell 40 % in three months', '2 seat reductions or removed items in six months',
            'an invoice overdue by 45 days']);

        getRecord.emit(record('001000000000001AAA', {
            Billing_Status__c: 'active', MRR__c: 500, ARR__c: 6000, Balance__c: 0, CurrencyIsoCode: 'EUR',
            Billing_Review_Flag__c: false, Churn_Risk__c: null, Churn_Risk_Reasons__c: null
        }));
        await flush();
        expect(element.shadowRoot.querySelector('[data-id="churn-risk"]')).toBeNull();
        expect(text(element, 'mrr')).toBe('500.00 EUR');
    });

    it('says plainly when the account has no subscription and nothing billed', async () => {
        const element = await mount();
        getRecord.emit(record('001000000000001AAA', {
            Billing_Status__c: 'none', MRR__c: 0, ARR__c: 0, Balance__c: 0, Billing_Review_Flag__c: false
        }));
        ['Billsync_Subscriptions__r', 'Invoices__r', 'Payments__r', 'Credit_Notes__r'].forEach((id) => emitList(id, []));
        await flush();

        expect(text(element, 'status')).toBe('No subscription');
        expect(text(element, 'empty')).toContain('No billsync subscription for this account yet');
        expect(element.shadowRoot.querySelector('[data-id="mrr"]')).toBeNull();
        expect(text(element, 'no-events')).toBe('No invoice, payment or credit note yet.');
    });

    it('shows an open review and an error when the fields cannot be read', async () => {
        const element = await mount();
        getRecord.emit(record('001000000000001AAA', {
            Billing_Status__c: 'past_due', MRR__c: 100, ARR__c: 1200, Balance__c: 50, Billing_Review_Flag__c: true,
            Billing_Review_Reason__c: 'billsync cannot bill this account: billing_address.country: \'Atlantis\''
        }));
        await flush();
        expect(text(element, 'status')).toBe('Past due');
        expect(text(element, 'review')).toContain('Atlantis');

        getRecord.error();
        await flush();
        expect(text(element, 'error')).toContain('billsync permission set');
    });
});
