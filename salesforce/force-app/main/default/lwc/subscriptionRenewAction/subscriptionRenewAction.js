import { LightningElement, api } from 'lwc';

// The subscription's "Renew" action: builds its Renewal deal.
export default class SubscriptionRenewAction extends LightningElement {
    @api recordId;
}
